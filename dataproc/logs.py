"""Console noise control: datatrove's loguru banners and INFO lines are hidden unless verbose.

datatrove logs through loguru: every task prints its pipeline, per-task and overall stats,
and its executor re-adds a console sink at INFO whenever a task starts or ends. Before a
stage runs on a datatrove executor, :func:`quiet_unless_verbose` turns that off in this
process and, through ``UnitStage.__setstate__``, in every process a stage is unpickled into
(local workers, Ray actors, Slurm jobs): the console sinks datatrove adds then only show
warnings and errors. Task log files (``logs/task_*.log``) keep everything. ``dataproc
--verbose`` calls :func:`set_verbose` and datatrove logs as it always does.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

_state = {"quiet": False, "verbose": False}


def is_quiet() -> bool:
    """Whether datatrove's console logging has been quietened in this process."""
    return _state["quiet"]


def set_verbose(verbose: bool) -> None:
    """``True``: leave datatrove's logging alone (``False``, the default: quieten it when a stage
    is handed to a datatrove executor)."""
    _state["verbose"] = verbose


def quiet_unless_verbose() -> None:
    """Quieten datatrove's console logging unless :func:`set_verbose` asked for it."""
    if not _state["verbose"]:
        quiet_datatrove()


def speed_up_loguru() -> None:
    """Make loguru's ``logger.add`` cheap: it rescans ``sysconfig`` paths on every call (~8 ms).

    datatrove adds and removes sinks around every task, so on a step of many small tasks this scan
    was most of the per-task overhead. The scanned paths do not change within a process: cache them.
    """
    from loguru import _better_exceptions

    formatter = _better_exceptions.ExceptionFormatter
    if not getattr(formatter._get_lib_dirs, "_dataproc_cached", False):
        cached = functools.cache(formatter._get_lib_dirs)
        cached._dataproc_cached = True  # type: ignore[attr-defined]
        formatter._get_lib_dirs = staticmethod(cached)


def quiet_datatrove() -> None:
    """Console sinks at WARNING now and whenever datatrove sets up a task's or its default logger."""
    import datatrove.executor.base as dt_base
    import datatrove.utils.logging as dt_logging
    from loguru import logger

    speed_up_loguru()
    _state["quiet"] = True
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if getattr(dt_base.add_task_logger, "_dataproc_quiet", False):
        return
    add_task_logger, setup_default_logger = dt_base.add_task_logger, dt_logging.setup_default_logger

    def quiet_add_task_logger(logging_dir: Any, rank: int, local_rank: int = 0, node_rank: int = -1) -> Any:
        # datatrove gives every task but local rank 0 a console sink at ERROR; so do we, for all
        return add_task_logger(logging_dir, rank, max(local_rank, 1), node_rank=node_rank)

    def quiet_setup_default_logger() -> None:
        logger.remove()
        logger.add(sys.stderr, level="WARNING")

    quiet_add_task_logger._dataproc_quiet = True  # type: ignore[attr-defined]
    quiet_add_task_logger._original = (add_task_logger, setup_default_logger)  # type: ignore[attr-defined]
    dt_base.add_task_logger = quiet_add_task_logger
    dt_logging.setup_default_logger = quiet_setup_default_logger
