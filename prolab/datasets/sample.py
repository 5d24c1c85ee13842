"""A tiny sample of a registered dataset, written in that dataset's exact mmseg on-disk layout.

It is for a smoke test of a dataset's layout and of a config: prolab reads it exactly like the real data (same
folders, split folder names, file suffixes, Cityscapes' city subfolders, Pascal Context's split files, label
values and ``reduce_zero_label``), so a run config that cannot start on the real data fails on the sample too,
in seconds and without the download. The pixels mean nothing: images are seeded noise over per-class colours,
label maps are random rectangles of several classes plus some ignored pixels.

    python -m prolab.datasets.sample cityscapes_19 /tmp/cityscapes_sample
    prolab train --dataset cityscapes_19 --data_root /tmp/cityscapes_sample ...
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .resolve import load_class_names
from .layouts import LAYOUTS, Layout

# file stems in each dataset's own naming (the sample looks like the real thing); "{split}" is the split key
# (train / val), "{i}" the image number
_STEMS = {
    "ade20k_150": lambda split, i: f"ADE_{split}_{i:08d}",
    "cityscapes_19": lambda split, i: f"sample_city/sample_city_{i:06d}_000019",
    "coco_stuff_171": lambda split, i: f"{(1 if split == 'train' else 5) * 100000 + i:012d}",
    "pascal_context_59": lambda split, i: f"{2008 if split == 'train' else 2009}_{i:06d}",
    "bdd100k_19": lambda split, i: f"{split[:3]}{i:05d}-sample",
}


def _stem(dataset: str, split: str, i: int) -> str:
    return _STEMS.get(dataset, lambda s, n: f"{s}_{n:05d}")(split, i)


def _label_map(rng: np.random.Generator, n_classes: int, reduce_zero_label: bool, h: int, w: int) -> np.ndarray:
    """Raw 8-bit values valid for the dataset: a background class, random rectangles of other classes, and an
    ignored rectangle (raw 0 with ``reduce_zero_label``, else 255)."""
    k = min(n_classes, 6)
    classes = rng.choice(n_classes, size=k, replace=False)           # training ids 0..C-1
    train_ids = np.full((h, w), classes[0], dtype=np.int64)
    for c in classes[1:]:
        y0, x0 = int(rng.integers(0, h - h // 4)), int(rng.integers(0, w - w // 4))
        y1, x1 = y0 + int(rng.integers(h // 4, h // 2 + 1)), x0 + int(rng.integers(w // 4, w // 2 + 1))
        train_ids[y0:y1, x0:x1] = c
    raw = train_ids + 1 if reduce_zero_label else train_ids
    y0, x0 = int(rng.integers(0, h - h // 8)), int(rng.integers(0, w - w // 8))
    raw[y0:y0 + max(1, h // 8), x0:x0 + max(1, w // 8)] = 0 if reduce_zero_label else 255
    return raw.astype(np.uint8)


def _image(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """RGB noise over one colour per raw label value (so regions are visible, and learnable)."""
    colours = np.random.default_rng(1234).integers(0, 256, (256, 3))
    noise = rng.integers(-40, 41, label.shape + (3,))
    return np.clip(colours[label] + noise, 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, format="JPEG", quality=90)
    else:
        im.save(path, format="PNG")


def write_sample(dataset: str, root: str | Path, n_train: int = 2, n_val: int = 2, size: tuple[int, int] = (80, 64),
                 seed: int = 0) -> Path:
    """Write a tiny ``dataset`` (a registered dataset with an mmseg layout) under ``root``; returns the data
    root to pass as ``data_root``.

    A smoke test of a dataset's layout and of a config: prolab reads it exactly like the real data. Both
    splits (train, val) are written with ``n_train`` / ``n_val`` images of ``size`` = (width, height) pixels:
    RGB images (JPEG or PNG, as the layout's suffix says) and 8-bit label maps whose values are valid for the
    dataset: with ``reduce_zero_label`` 1..C plus 0 (ignored), otherwise 0..C-1 plus 255 (ignored). Every map
    holds several classes. The same ``seed`` writes the same files. Use an empty folder: files already under
    the layout's folders would be listed too."""
    if dataset not in LAYOUTS:
        raise KeyError(f"no on-disk layout registered for {dataset!r}; known: {', '.join(LAYOUTS)}")
    w, h = (int(v) for v in size)
    if w < 8 or h < 8:
        raise ValueError(f"size {size}: each side must be at least 8 pixels")
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train = {n_train}, n_val = {n_val}: each split needs at least one image")
    layout: Layout = LAYOUTS[dataset]
    n_classes = len(load_class_names(dataset))
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        sub = layout.splits.get(split, split)
        img_dir, ann_dir = root / layout.img_dir.format(split=sub), root / layout.ann_dir.format(split=sub)
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        stems = [_stem(dataset, split, i) for i in range(n)]
        for stem in stems:
            label = _label_map(rng, n_classes, layout.reduce_zero_label, h, w)
            _save(_image(rng, label), img_dir / f"{stem}{layout.img_suffix}")
            _save(label, ann_dir / f"{stem}{layout.seg_map_suffix}")
        if layout.ann_file:
            listing = root / layout.ann_file.format(split=sub)
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text("".join(f"{s}\n" for s in stems))
    return root


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m prolab.datasets.sample DATASET FOLDER\n"
              f"  DATASET: one of {', '.join(LAYOUTS)}", file=sys.stderr)
        return 2
    print(write_sample(args[0], args[1]))
    return 0


if __name__ == "__main__":
    from prolab.entry import entry_point

    raise SystemExit(entry_point(main, "python -m prolab.datasets.sample"))
