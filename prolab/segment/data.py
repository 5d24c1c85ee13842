"""Training and evaluation data of a run: the splits of its dataset, and the deterministic batch sequence."""
from __future__ import annotations

import numpy as np
import torch

from .. import paths
from .config import TrainConfig


def open_split(cfg: TrainConfig, split: str, transform=None):
    from ..datasets.layouts import custom_dataset, open_dataset

    if cfg.dataset == "custom":
        if not (cfg.img_dir and cfg.ann_dir and cfg.classes):
            raise ValueError("dataset='custom' needs img_dir, ann_dir and classes")
        if split != "train" and "{split}" not in cfg.img_dir:
            import warnings

            warnings.warn(f"custom data: img_dir {cfg.img_dir!r} has no {{split}} placeholder, so the {split!r} "
                          "split is the training folder itself", stacklevel=2)
        sub = lambda p: str(paths.resolve(p)).replace("{split}", split)  # noqa: E731
        return custom_dataset(sub(cfg.img_dir), sub(cfg.ann_dir), paths.resolve(cfg.classes), cfg.img_suffix,
                              cfg.seg_map_suffix, cfg.ignore_index, transform=transform)
    root = cfg.data_root
    if cfg.dataset == "synthetic_outdoor" and root is None:
        from ..datasets import synthetic

        root = synthetic.generate()
    if root is None:
        raise ValueError(f"dataset {cfg.dataset!r} needs data_root (the folder holding its mmseg layout)")
    return open_dataset(cfg.dataset, paths.resolve(root), split, transform)


def eval_split(cfg: TrainConfig, split: str = "val"):
    """The evaluation split with the eval transform (resize to the test scale, normalise)."""
    from ..datasets.transforms import EvalTransform

    return open_split(cfg, split, EvalTransform(tuple(cfg.scale)))


class _Batches(torch.utils.data.Dataset):
    """Item (iteration, slot) -> one augmented sample; slot j of iteration i is sample number i*B + j of an
    endless sequence of seeded permutations."""

    def __init__(self, ds, transform, batch_size: int, seed: int):
        self.ds, self.transform, self.bs, self.seed = ds, transform, batch_size, seed

    def index(self, it: int, slot: int) -> int:
        pos = it * self.bs + slot
        epoch, k = divmod(pos, len(self.ds))
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return int(torch.randperm(len(self.ds), generator=g)[k])

    def __len__(self):
        return 2 ** 62

    def __getitem__(self, key):
        it, slot = key
        img, label = self.ds.load(self.index(it, slot))
        return self.transform(img, label, np.random.default_rng([self.seed, it, slot]))


class _Keys(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int, slots: range):
        self.start, self.stop, self.slots = start, stop, slots

    def __iter__(self):
        return ((it, j) for it in range(self.start, self.stop) for j in self.slots)

    def __len__(self):
        return (self.stop - self.start) * len(self.slots)
