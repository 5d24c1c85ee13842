"""Trivial groupings, scored as a grouping model is: the yardstick for the oracle-named mIoU.

The oracle names every group by the majority ground-truth class of its pixels (``zero_shot.oracle_labels``), so
its mIoU measures how well the groups follow object boundaries, whatever the naming does. A grouping that knows
nothing about the image sets the bar a trained model must clear: **one group per image** (every pixel gets the
image's majority class) and a **grid** of k x k square patches (each patch gets its own majority class; a finer
grid scores higher with no understanding at all, so the bar is quoted at the model's number of groups). Scored
with the kit's confusion matrix (``prolab.evaluate.metrics``), so the numbers compare with every other mIoU.

    python -m prolab.wovss.baselines            # the embedded default's val split, 1, 4 and 8 groups
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from .zero_shot import oracle_labels


def grid_groups(height: int, width: int, n_groups: int) -> np.ndarray:
    """(H, W) group ids of a k x k grid of patches, k = round(sqrt(n_groups)) (n_groups 1: one group)."""
    k = max(1, round(math.sqrt(n_groups)))
    if k * k != n_groups:
        raise ValueError(f"n_groups = {n_groups}: a square grid needs a square number (1, 4, 9, 16, ...)")
    rows = np.minimum(np.arange(height) * k // height, k - 1)
    cols = np.minimum(np.arange(width) * k // width, k - 1)
    return rows[:, None] * k + cols[None, :]


def oracle_miou(dataset, groups_of, n_classes: int, class_names: list[str], limit: int | None = None,
                ignore_index: int = 255, progress: bool = True) -> dict:
    """Oracle-named mIoU of a grouping over a dataset split: ``groups_of(image, label) -> (H, W) group ids``;
    the dataset yields (image, label) by ``load(i)``. Returns ``metrics_from_confusion``'s dict."""
    from ..evaluate.metrics import confusion_matrix, metrics_from_confusion
    from ..progress import tqdm

    n = len(dataset) if limit is None else min(limit, len(dataset))
    cm = np.zeros((n_classes, n_classes), np.int64)
    for i in tqdm(range(n), desc="oracle-named grouping", disable=not progress):
        image, label = dataset.load(i)
        groups = np.asarray(groups_of(image, label))
        if groups.shape != label.shape:
            raise ValueError(f"image {i}: groups of shape {groups.shape} for a label map of shape {label.shape}")
        named = oracle_labels(torch.from_numpy(groups.ravel()).long(), torch.from_numpy(label.ravel()).long(),
                              n_classes, ignore_index).numpy().reshape(label.shape)
        cm += confusion_matrix(named, label, n_classes, ignore_index)
    return metrics_from_confusion(cm, class_names)


def trivial_baselines(split: str = "val", group_counts=(1, 4, 16), limit: int | None = None,
                      progress: bool = True) -> dict[int, float]:
    """Oracle-named mIoU of a square grid of each number of groups on the embedded default's ``split``."""
    from ..train.config import TrainConfig
    from ..train.data import open_split

    ds = open_split(TrainConfig.demo(), split)
    names = list(ds.class_names)
    out = {}
    for n in group_counts:
        res = oracle_miou(ds, lambda image, label, n=n: grid_groups(*label.shape, n), len(names), names, limit,
                          progress=progress)
        out[n] = round(res["mIoU"], 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m prolab.wovss.baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="val", help="split of the embedded default (default val)")
    p.add_argument("--group_counts", type=int, nargs="+", default=[1, 4, 16], help="square numbers of groups")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    a = p.parse_args(argv)
    for n, miou in trivial_baselines(a.split, a.group_counts, a.limit).items():
        print(f"{n:>3} group(s) as a {round(math.sqrt(n))} x {round(math.sqrt(n))} grid: oracle-named mIoU {miou:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["grid_groups", "oracle_miou", "trivial_baselines"]
