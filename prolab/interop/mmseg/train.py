"""Train (or test) an mmseg config with ProLab's plug-in through mmengine's Runner, as mmseg's tools/train.py
does:

    .venv/bin/python -m prolab.interop.mmseg.train configs/mmseg/prolab_tiny_synthetic.py --work-dir results/_scratch/mm
    torchrun --nproc_per_node 8 -m prolab.interop.mmseg.train configs/mmseg/prolab_ade20k.py --launcher pytorch
    .venv/bin/python -m prolab.interop.mmseg.train CONFIG --test CHECKPOINT      # evaluate with the config's test loop
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def build_runner(config: str, work_dir: str | None = None, resume: bool = False, launcher: str = "none",
                 cfg_options: dict | None = None):
    import prolab.interop.mmseg.plugin  # noqa: F401  (stand-ins and registrations before the config is built)
    from mmengine.config import Config
    from mmengine.runner import Runner

    if not Path(config).is_file():
        raise FileNotFoundError(f"no config file {config}")
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") in ("ProLabClassCheckHook", "prolab.interop.mmseg.hooks.ProLabClassCheckHook") for h in hooks):
        cfg.custom_hooks = hooks + [dict(type="ProLabClassCheckHook")]   # a config's own hook list keeps the check
    cfg.work_dir = work_dir or cfg.get("work_dir") or str(Path("results/_scratch/mmseg") / Path(config).stem)
    cfg.resume = bool(resume)
    return Runner.from_cfg(cfg)


def main(argv=None) -> int:
    from mmengine.config import DictAction

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--work-dir", default=None, help="where logs and checkpoints go (default results/_scratch/mmseg/<config>)")
    ap.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in the work dir")
    ap.add_argument("--test", default=None, metavar="CHECKPOINT", help="only evaluate this checkpoint")
    ap.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    ap.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                    help="config overrides, key=value (mmengine syntax)")
    a = ap.parse_args(argv)
    if "LOCAL_RANK" not in os.environ and a.launcher == "pytorch":
        raise SystemExit("--launcher pytorch runs under torchrun (LOCAL_RANK is not set)")
    options = dict(a.cfg_options or {})
    if a.test:
        options["load_from"] = a.test
    runner = build_runner(a.config, a.work_dir, a.resume, a.launcher, options)
    runner.test() if a.test else runner.train()
    return 0


if __name__ == "__main__":
    from prolab.entry import entry_point

    raise SystemExit(entry_point(main, "python -m prolab.interop.mmseg.train"))
