"""Training throughput (images per second) of the kit's trainer, before and after the changes that remove work
that is not the model's: the property loss through the reference path (upsample, then the loss; what the
trainer did before ``segment.fused``) or fused, and data loading + augmentation on the main thread
(``num_workers=0``) or in worker processes. Two settings on the embedded default: the demo preset (128 px crops
of 256x128 images, batch 8) and a real-size one (480x360 images, 256 px crops, batch 8, UPerNet 128).
Seconds per iteration are read from the run's own log, after the first ``--skip`` iterations. Prints figures.

    .venv/bin/python bench/bench_throughput.py [--iters 30] [--skip 5] [--settings demo real-size]
"""
import argparse
import os
import time

import torch

from prolab.train import train
from prolab.train.config import TrainConfig

SETTINGS = {"demo": dict(), "real-size": dict(scale=(480, 360), crop_size=256, batch_size=8, channels=128)}
VARIANTS = [("before: upsample + loss, loading on the main thread", "0", 0),
            ("fused loss, loading on the main thread", "1", 0),
            ("after: fused loss, 2 loader workers", "1", 2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--skip", type=int, default=5, help="first iterations left out (warm-up, first batch)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--modes", nargs="+", default=["property", "category"])
    a = ap.parse_args()
    if a.iters <= a.skip:
        ap.error("--iters must exceed --skip")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}, "
          f"{a.iters} iterations, seconds counted after iteration {a.skip}")
    for name in a.settings:
        for mode in a.modes:
            for label, fused_flag, workers in VARIANTS:
                if mode == "category" and fused_flag == "0":
                    continue              # the category loss has no fused path
                os.environ["PROLAB_FUSED_LOSS"] = fused_flag
                cfg = TrainConfig.demo(run_name=f"bench-throughput-{name}-{mode}-{fused_flag}-{workers}", mode=mode,
                                       iters=a.iters, num_workers=workers, checkpoint_interval=10**6,
                                       **SETTINGS[name])
                t0 = time.perf_counter()
                res = train(cfg, force=True, progress=False)
                wall = time.perf_counter() - t0
                log = res.log
                per_it = (log[-1]["seconds"] - log[a.skip - 1]["seconds"]) / (len(log) - a.skip)
                print(f"{name:9s} {mode:8s} {label:<52s} {per_it:6.3f} s/it  {cfg.batch_size / per_it:6.1f} img/s"
                      f"  (wall {wall:.0f} s incl. set-up)")
    os.environ.pop("PROLAB_FUSED_LOSS", None)


if __name__ == "__main__":
    main()
