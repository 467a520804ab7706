"""Kept so that ``torchrun --nproc-per-node N engine/pretrain.py --config ... [overrides]`` keeps working:
the same as ``torchrun --nproc-per-node N -m engine.stages.pretrain ...`` (the stage lives in
``engine/stages/pretrain.py``; the installed package makes ``engine`` importable from a script).
"""

from __future__ import annotations

from engine.stages.common import run_main
from engine.stages.pretrain import main

__all__ = ["main"]

if __name__ == "__main__":
    run_main(main)
