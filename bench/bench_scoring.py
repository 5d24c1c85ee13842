"""Class recovery at feature resolution (score the quarter-resolution logits, upsample the C score maps) against
full resolution (score every pixel from its upsampled K logits; fused on CPU, no K-channel map): mIoU and time
on the embedded default's validation split, for property runs trained with the demo preset (one per seed).
Prints figures.

    .venv/bin/python bench/bench_scoring.py [--seeds 0 1 2] [--iters 100]
"""
import argparse
import time

import torch

from prolab.datasets import seen_class_names
from prolab.train import load_trained, train
from prolab.train.data import eval_split
from prolab.evaluate.inference import evaluate
from prolab.train.config import TrainConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=100)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; demo preset, {a.iters} iterations, "
          "property supervision, validation split")
    diffs = []
    for seed in a.seeds:
        name = f"bench-scoring-s{seed}-i{a.iters}"
        train(TrainConfig.demo(run_name=name, iters=a.iters, seed=seed), progress=False)   # reused when finished
        model, cfg, _ = load_trained(name)
        ds = eval_split(cfg, "val")
        row = {}
        for res in ("feature", "full"):
            t0 = time.perf_counter()
            r = evaluate(model, ds, progress=False, score_resolution=res, classes=seen_class_names(cfg.dataset))
            row[res] = (r.metrics["mIoU"], (time.perf_counter() - t0) / r.n_images)
        diffs.append(row["full"][0] - row["feature"][0])
        print(f"seed {seed}: mIoU feature {row['feature'][0]:.2f} ({row['feature'][1] * 1000:.0f} ms/image), "
              f"full {row['full'][0]:.2f} ({row['full'][1] * 1000:.0f} ms/image), full - feature "
              f"{diffs[-1]:+.2f}")
    mean = sum(diffs) / len(diffs)
    print(f"full - feature over {len(diffs)} seeds: mean {mean:+.2f} mIoU "
          f"(min {min(diffs):+.2f}, max {max(diffs):+.2f})")


if __name__ == "__main__":
    main()
