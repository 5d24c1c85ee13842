"""Property-level vs category-level supervision on the embedded default, equal budget, several seeds.

Writes results/supervision/: runs.csv (one row per run), summary.csv (mean and std per supervision, with the
paper's ADE20K numbers beside ours, labelled by scale), per_class.csv, config.json, environment.json.
Resumable: runs already in runs.csv are not trained again.

    .venv/bin/python scripts/compare_supervision.py [--iters 300] [--seeds 0 1 2]
"""
import argparse
import time

import pandas as pd

from prolab import paths
from prolab.files import atomic_write_json, atomic_write_text, environment_info, utc_now
from prolab.segment import train
from prolab.segment.report import evaluate_runs
from prolab.segment.train import TrainConfig

# method.md §5: mIoU with the same network, ADE20K, ViT-Adapter-B + UperNet, 160k iterations
PAPER = {"property": 49.0, "category": 48.4}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="results/supervision")
    a = ap.parse_args()
    out = paths.resolve(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_csv = out / "runs.csv"
    done = pd.read_csv(runs_csv) if runs_csv.exists() else pd.DataFrame()
    base = dict(iters=a.iters, checkpoint_interval=100, warmup_iters=max(10, a.iters // 20))
    atomic_write_json(out / "config.json", {"created": utc_now(), "seeds": a.seeds,
                                            "train": TrainConfig.demo(**base).to_dict(),
                                            "evaluation": "val split (80 images), whole image, mean over the 16 "
                                                          "classes labelled in training"})
    atomic_write_json(out / "environment.json", environment_info())
    per_class = {}
    for seed in a.seeds:
        for mode in ("property", "category"):
            name = f"sup-{mode}-i{a.iters}-s{seed}"
            if not done.empty and name in set(done["run"]):
                continue
            t0 = time.time()
            train(TrainConfig.demo(run_name=name, mode=mode, seed=seed, **base))
            seconds = time.time() - t0
            summary, pc, _ = evaluate_runs([name], progress=False)
            row = summary.reset_index().iloc[0].to_dict()
            row["train_seconds"] = round(seconds, 1)
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            atomic_write_text(runs_csv, done.to_csv(index=False))
            per_class[name] = pc[name]
            print(f"{name}: mIoU {row['mIoU']:.2f} ({seconds:.0f} s)", flush=True)
    if per_class:
        old = pd.read_csv(out / "per_class.csv", index_col=0) if (out / "per_class.csv").exists() else pd.DataFrame()
        atomic_write_text(out / "per_class.csv", pd.concat([old, pd.DataFrame(per_class)], axis=1).to_csv())
    write_summary(done, out)


def write_summary(runs: pd.DataFrame, out):
    g = runs.groupby("mode")
    table = pd.DataFrame({
        "runs": g.size(),
        "mIoU mean": g["mIoU"].mean().round(2), "mIoU std": g["mIoU"].std(ddof=1).round(2),
        "mAcc mean": g["mAcc"].mean().round(2), "aAcc mean": g["aAcc"].mean().round(2),
        "ours: scale": "embedded synthetic 128px, MobileNetV2 + UPerNet(64), CPU",
        "paper mIoU (ADE20K, ViT-Adapter-B, 160k it)": pd.Series(PAPER),
    })
    atomic_write_text(out / "summary.csv", table.to_csv())
    print(table.to_string())


if __name__ == "__main__":
    main()
