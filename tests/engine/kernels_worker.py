"""Train the tiny model under several ``kernels.*`` settings in ONE process and report what each run did.

    python tests/engine/kernels_worker.py SPEC.json

SPEC.json: {"base": [overrides...], "out": path, "runs": {name: [overrides...]}}. Each run is a fresh
``build_run`` (world size 1) trained for ``train.steps``. Written to "out": per run the step losses, grad
norms and final eval loss, the Triton launches as {kernel: {variant: count}} (a spy on
``llmkernels.dispatch.Kernel.on``), and the initial state dict as {key: [shape, sha1 of the bytes]}; plus the
dispatcher's backend for a CPU tensor.

A separate process because Triton's interpreter must be chosen before ``triton`` is first imported
(megatron-core imports it): its standard-library functions (``tl.sum``…) are built as compiled
``JITFunction``s otherwise, and interpreted kernels that call them fail. The caller sets
``TRITON_INTERPRET=1`` in this process's environment when there is no GPU.
"""

from __future__ import annotations

import collections
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    import torch

    from engine.config import load_config
    from engine.model import unwrap
    from engine.stages.pretrain import build_run
    from llmkernels import dispatch

    spec = json.loads(Path(sys.argv[1]).read_text())
    launches: collections.Counter = collections.Counter()
    original = dispatch.Kernel.on

    def spy(self: dispatch.Kernel, t: torch.Tensor):
        launches[self.__name__, "interpret" if dispatch.interpreting(t) else "compiled"] += 1
        return original(self, t)

    dispatch.Kernel.on = spy  # type: ignore[method-assign]
    results: dict = {"backend_cpu": dispatch.backend(torch.zeros(1)), "runs": {}}
    for name, extra in spec["runs"].items():
        launches.clear()
        cfg = load_config(ROOT / "configs/pretrain/tiny_cpu.yaml", [*spec["base"], *extra], world_size=1)
        run = build_run(cfg, resume=False)
        init = {k: [list(v.shape), hashlib.sha1(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()]
                for k, v in unwrap(run.trainer.model[0]).state_dict().items()
                if isinstance(v, torch.Tensor) and v.dtype != torch.bfloat16}
        records = run.trainer.fit()
        counts: dict[str, dict[str, int]] = {}
        for (kernel, variant), n in launches.items():
            counts.setdefault(kernel, {})[variant] = n
        results["runs"][name] = {
            "losses": [r["loss"] for r in records],
            "grad_norms": [r["grad_norm"] for r in records],
            "eval_loss": records[-1].get("eval_loss"),
            "launches": counts,
            "init": init,
        }
    Path(spec["out"]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
