"""What every training stage shares: the command-line entry, the fit/teardown tail, and the building
blocks of the post-training stages (process groups, models from the pretraining builder, the previous
stage's weights, a ``Trainer`` over the shared loop).

Every stage module (``engine/stages/<stage>.py``) runs as ``torchrun -m engine.stages.<stage>`` (or
``python -m``). Its ``main`` parses with ``stage_parser`` + ``parse_args`` (``--verbose``; megatron-core's
Apex/TransformerEngine fallback warnings hidden otherwise), runs its body under ``guarded`` (the exit
codes below) and trains through ``fit_and_close``. A post-training stage supplies ``build(cfg) ->
StageRun`` (its data, task and models) and calls ``posttrain_main``.

Exit codes: 0 done, 2 bad config (``ConfigError``) or bad input (``ConvertError``, …), 3 the run stopped
on a NaN/Inf loss (the last good checkpoint is untouched), 4 bad data rows (``DataError``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from engine.config import ConfigError
from engine.posttrain.config import PosttrainConfig, load_posttrain_config

if TYPE_CHECKING:
    import torch

EXIT_CONFIG = 2  # bad config or input
EXIT_NONFINITE = 3  # stopped on a NaN/Inf loss
EXIT_DATA = 4  # bad data rows

# megatron-core's notes that it falls back to PyTorch without Apex / TransformerEngine (always so on CPU),
# and its deprecation note on the cuda-graph scope: printed once per rank and module, never actionable here
QUIET_WARNINGS = (
    r"Transformer Engine and Apex are not installed",
    r"Apex is not installed",
    r"full scope is deprecated",
    # a tuning hint for CUDA streams, printed by every TP rank (and meaningless on CPU)
    r"When using async grad allreduce it is recommended to set the environment variable CUDA_DEVICE_MAX",
)


def quiet_warnings(verbose: bool = False) -> None:
    """Hide megatron-core's fallback warnings (``QUIET_WARNINGS``) unless ``verbose``; call it before
    megatron is imported (a module warns once, when it is first imported)."""
    if verbose:
        return
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)


def add_verbose(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--verbose", action="store_true",
                        help="show megatron-core's Apex/TransformerEngine fallback warnings (hidden by default)")
    return parser


def stage_parser(description: str, epilog: str | None = None, config_help: str | None = None) -> argparse.ArgumentParser:
    """The parser of a stage: ``--config YAML``, dotted ``key=value`` overrides and ``--verbose``."""
    kw: dict[str, Any] = {}
    if epilog is not None:
        kw = {"epilog": epilog, "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = argparse.ArgumentParser(description=description.splitlines()[0], **kw)
    parser.add_argument("--config", required=True, help=config_help or "YAML config")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. parallel.tp=2")
    return add_verbose(parser)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, then the warning filters for its ``--verbose``."""
    args = parser.parse_args(argv)
    quiet_warnings(getattr(args, "verbose", False))
    return args


def guarded(body: Callable[[], int], also: tuple[type[Exception], ...] = ()) -> int:
    """``body()``'s exit status, or the status of the error it raised: ``ConfigError`` and the classes in
    ``also`` → 2, ``DataError`` → 4, each printed as ``Name: message`` on stderr (the process exits next;
    a process group is left to the caller: an in-process caller may still use its own)."""
    from engine.posttrain.records import DataError

    codes: list[tuple[type[Exception], int]] = [(ConfigError, EXIT_CONFIG), (DataError, EXIT_DATA),
                                                *((cls, EXIT_CONFIG) for cls in also)]
    try:
        return body()
    except tuple(cls for cls, _ in codes) as exc:
        cls, code = next((c, n) for c, n in codes if isinstance(exc, c))
        print(f"{cls.__name__}: {exc}", file=sys.stderr)
        return code


def run_main(main: Callable[[], int]) -> NoReturn:
    """The ``if __name__ == "__main__"`` of every entry: one thread per rank unless told, exit with ``main()``."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())


def fit_and_close(cfg: Any, start_step: int, header: dict[str, Any], body: Callable[[Any], Any],
                  progress: bool | None = None, desc: str = "train", teardown: bool = True,
                  summary: bool = True) -> int:
    """Every stage's tail: ``body(logger)`` with rank 0's metrics logger (``<train.run_dir>/metrics.jsonl``,
    ``run.json`` = ``header``; a progress bar named ``desc`` when ``progress``, default ``train.progress``);
    then, with ``summary``, one line on rank 0 (``MetricsLogger.summary``). A NaN/Inf stop gives exit code
    3; the logger is closed whatever happens and, with ``teardown``, the process group torn down."""
    import torch.distributed as dist

    from engine.loop import NonFiniteLoss
    from engine.metrics import MetricsLogger

    rank0 = dist.get_rank() == 0
    logger = MetricsLogger(cfg.train.run_dir, rank0, cfg.logging.tensorboard, cfg.train.steps, start_step,
                           cfg.train.progress if progress is None else progress, header, desc=desc)
    status = 0
    try:
        body(logger)
    except NonFiniteLoss as exc:
        if rank0:
            print(f"error: {exc}", file=sys.stderr)
        status = EXIT_NONFINITE
    finally:
        logger.close()
    if summary and rank0 and status == 0:
        print(logger.summary(), flush=True)
    if teardown:
        dist.barrier()
        dist.destroy_process_group()
    return status


def fit_run(run: Any, logger: Any) -> list[dict]:
    """``run.trainer.fit(logger, run.ckpt_dir)``; a run with final metrics (``after_fit``: the reward
    model's accuracy) logs them as one last record (the summary line shows them). Returns the records."""
    records = run.trainer.fit(logger, run.ckpt_dir) or []
    if getattr(run, "after_fit", None) is not None:
        final = run.after_fit()
        logger.log({"step": run.trainer.step, **final})
        records.append({"step": run.trainer.step, **final})
    return records


@dataclass
class StageRun:
    cfg: PosttrainConfig
    layout: Any
    trainer: Any
    ckpt_dir: Path
    info: dict[str, Any] = field(default_factory=dict)  # logged in the header (e.g. skipped rows)
    after_fit: Callable[[], dict[str, Any]] | None = None  # final metrics (e.g. pairwise accuracy)


def setup(cfg: PosttrainConfig) -> Any:
    from engine.parallel import init_distributed, seed_everything, setup_model_parallel

    init_distributed()
    layout = setup_model_parallel(cfg.parallel)
    seed_everything(cfg.train.seed)
    return layout


def trainable(cfg: PosttrainConfig, model_cls: Any, init: str | None, lr: float | None = None) -> tuple:
    """Model chunks (masked-attention capable), optimizer and scheduler, initialised from ``init``."""
    import dataclasses

    from engine.model import build_model
    from engine.optim import build_optimizer, build_scheduler
    from engine.posttrain.models import load_backbone, with_masked_attention

    model = build_model(cfg, model_cls=with_masked_attention(model_cls))
    ocfg = cfg if lr is None else dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr,
                                                                                     min_lr=lr * 0.1))
    optimizer = build_optimizer(ocfg, model)
    scheduler = build_scheduler(ocfg, optimizer)
    if init:
        load_backbone(init, model, optimizer)
    return model, optimizer, scheduler


def frozen(cfg: PosttrainConfig, model_cls: Any, path: str) -> list[torch.nn.Module]:
    """An eval-mode, gradient-free copy built by the same builder (reference policy, reward model)."""
    from engine.model import build_model
    from engine.posttrain.models import load_backbone, with_masked_attention

    model = build_model(cfg, model_cls=with_masked_attention(model_cls), wrap_ddp=False)
    load_backbone(path, model)
    for m in model:
        m.eval()
        m.requires_grad_(False)
    return model


def ckpt_dir(cfg: PosttrainConfig) -> Path:
    return Path(cfg.checkpoint.dir or Path(cfg.train.run_dir) / "checkpoints")


def resume_or_init(trainer: Any, cfg: PosttrainConfig) -> None:
    """Continue this stage from its latest checkpoint if there is one (the init weights were loaded)."""
    from engine import checkpoint

    found = checkpoint.latest(ckpt_dir(cfg)) if cfg.checkpoint.resume else None
    if found is not None:
        trainer.resume(found)


def run_iterations(stage: Any, logger: Any = None) -> list[dict]:
    """Call ``stage.iterate()`` until ``stage.iteration`` reaches ``stage.iterations`` (the rollout stages:
    PPO, GRPO), logging each record; returns the records."""
    records = []
    while stage.iteration < stage.iterations:
        records.append(rec := stage.iterate())
        if logger is not None:
            logger.log(rec)
    return records


def rank0_print(*args: Any) -> None:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(*args, flush=True)


def posttrain_main(stage: str, build: Callable[[PosttrainConfig], StageRun], doc: str,
                   argv: list[str] | None = None) -> int:
    """The command line of a post-training stage: config → ``build`` → ``fit_and_close`` (exit codes above)."""
    parser = stage_parser(doc, config_help=f"YAML config (configs/posttrain/{stage}*.yaml)")
    args = parse_args(parser, argv)

    def body() -> int:
        cfg = load_posttrain_config(stage, args.config, args.overrides)

        import torch.distributed as dist

        run = build(cfg)
        header = {"stage": stage, "config": cfg.to_dict(), "world_size": dist.get_world_size(),
                  "layout": vars(run.layout), **run.info}
        return fit_and_close(cfg, run.trainer.step, header, lambda logger: fit_run(run, logger), desc=stage)

    return guarded(body)


def load_split(cfg: PosttrainConfig, kind: str) -> tuple[list[Any], list[Any], dict[str, Any], Any]:
    """Train and held-out items of ``kind`` (sft | pairs | prompts), the skip counts, and the template."""
    from engine.posttrain.records import RowReader
    from engine.posttrain.template import ChatTemplate

    template = ChatTemplate(cfg.tokenizer.path, cfg.template)
    reader = RowReader(template, cfg.dataset, cfg.model.seq_length)
    train = reader.load(cfg.dataset.train, kind)
    skipped = {"train": dict(train.skipped)}
    items = train.items
    if cfg.dataset.valid:
        valid = reader.load(cfg.dataset.valid, kind)
        skipped["valid"] = dict(valid.skipped)
        held = valid.items
    else:
        cut = len(items) - int(len(items) * cfg.dataset.valid_fraction)
        items, held = items[:cut], items[cut:]
    if any(skipped.values()):
        rank0_print(f"skipped bad rows: {skipped}")
    return items, held, {"skipped_rows": skipped, "train_items": len(items), "valid_items": len(held)}, template
