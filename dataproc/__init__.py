"""dataproc package."""
