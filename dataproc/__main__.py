"""``python -m dataproc`` == the ``dataproc`` console script."""

from dataproc.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
