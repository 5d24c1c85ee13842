"""ProLab inside mmsegmentation 1.x. The registrations live in ``prolab.interop.mmseg.plugin`` (imported by every config
in ``configs/mmseg/`` through ``custom_imports``); this package itself imports nothing of mmsegmentation, so
``available()`` can tell a notebook whether ``make mmseg`` has been run."""
from __future__ import annotations

import importlib.util

INSTALL_HINT = "`make mmseg` installs mmsegmentation 1.2.2, mmengine and mmcv-lite (about 30 s)"


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("mmseg", "mmengine", "mmcv"))


def train_config(config: str, work_dir: str, iters: int | None = None, resume: bool = False) -> dict:
    """Train an mmseg config through mmengine's Runner (``iters`` overrides its length and validates at the end)
    and return the validation metrics (IoUMetric)."""
    from .train import build_runner

    options = {"train_cfg.max_iters": iters, "train_cfg.val_interval": iters} if iters else None
    runner = build_runner(config, work_dir, resume, cfg_options=options)
    runner.train()
    return dict(runner.val_loop.run())


TINY_CONFIG = "configs/mmseg/prolab_tiny_synthetic.py"


def tiny_run(iters: int, work_dir: str | None = None) -> str:
    """Notebook 05's mmsegmentation cell: train the tiny config on the embedded default for ``iters`` iterations
    (0: skip) and say what it scored, or how to install the plug-in."""
    from ... import paths

    if not iters:
        return f"skipped (mmseg_iters = 0); {TINY_CONFIG} is the same run through mmsegmentation"
    if not available():
        return f"mmsegmentation is not installed: {INSTALL_HINT}, then run this cell again"
    out = work_dir or str(paths.output_root(None, "mmseg") / "prolab_tiny_synthetic")
    m = train_config(str(paths.resolve(TINY_CONFIG)), out, iters)
    return (f"{iters} iterations through mmengine's Runner: mIoU {m['mIoU']:.2f}, mAcc {m['mAcc']:.2f}, aAcc "
            f"{m['aAcc']:.2f} (IoUMetric over every class, the two unseen ones included); logs and "
            f"checkpoints in {out}")
