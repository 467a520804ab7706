"""``python -m engine.report RUN_DIR``: write the run's HTML report and print its path."""

from __future__ import annotations

import sys

from engine.report.html import main

if __name__ == "__main__":
    sys.exit(main())
