"""The run report: one HTML page (``html``) with matplotlib charts (``plots``) for a run directory.

    python -m engine.report RUN_DIR [--output PATH] [--bench-dir benchmarks/results]
"""

from __future__ import annotations

from engine.report.html import ReportError, Stage, build_report, find_stages, main

__all__ = ["ReportError", "Stage", "build_report", "find_stages", "main"]
