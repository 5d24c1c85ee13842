"""Training and evaluation data of a run: the splits of its dataset, and the deterministic batch sequence."""
from __future__ import annotations

import numpy as np
import torch

from .. import paths
from .config import TrainConfig


def open_split(cfg: TrainConfig, split: str, transform=None, allow_train_folder: bool = False):
    """Split ``split`` of the run's dataset. A split other than "train" whose image folder is the training
    folder is refused unless ``allow_train_folder`` (a missing ``{split}`` would score the training images)."""
    from ..datasets.layouts import custom_dataset, guard_train_folder, open_dataset
    from ..datasets.spec import is_spec_path, load_spec

    if is_spec_path(cfg.dataset):
        return load_spec(cfg.dataset).open(split, transform, allow_train_folder)
    if cfg.dataset == "custom":
        if not (cfg.img_dir and cfg.ann_dir and cfg.classes):
            raise ValueError("dataset='custom' needs img_dir, ann_dir and classes")
        sub = lambda p, s: str(paths.resolve(p)).replace("{split}", s)  # noqa: E731
        if split != "train":
            for d, what in ((cfg.img_dir, "images"), (cfg.ann_dir, "label maps")):
                guard_train_folder(sub(d, split), sub(d, "train"), split, "custom data", allow_train_folder,
                                   fix=f"put {{split}} in --img_dir and --ann_dir (e.g. images/{{split}}; now "
                                       f"{cfg.img_dir!r} and {cfg.ann_dir!r})", what=what)
        ds = custom_dataset(sub(cfg.img_dir, split), sub(cfg.ann_dir, split), paths.resolve(cfg.classes),
                            cfg.img_suffix, cfg.seg_map_suffix, cfg.ignore_index, transform=transform)
        ds.split = split
        return ds
    root = cfg.data_root
    if cfg.dataset == "synthetic_outdoor" and root is None:
        from ..datasets import synthetic

        root = synthetic.generate()
    if root is None:
        raise ValueError(f"dataset {cfg.dataset!r} needs data_root (the folder holding its mmseg layout)")
    return open_dataset(cfg.dataset, paths.resolve(root), split, transform)


def eval_split(cfg: TrainConfig, split: str = "val", allow_train_folder: bool = False):
    """The evaluation split with the eval transform (resize to the test scale, normalise)."""
    from ..datasets.transforms import EvalTransform

    return open_split(cfg, split, EvalTransform(tuple(cfg.scale)), allow_train_folder)


class Batches(torch.utils.data.Dataset):
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


class Keys(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int, slots: range):
        self.start, self.stop, self.slots = start, stop, slots

    def __iter__(self):
        return ((it, j) for it in range(self.start, self.stop) for j in self.slots)

    def __len__(self):
        return (self.stop - self.start) * len(self.slots)
