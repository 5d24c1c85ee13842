"""Tiny fixtures in the exact on-disk layouts mmseg expects (two images per split, 8x6 pixels)."""
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 6, 8


def _img(path: Path, seed: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


def _lab(path: Path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.resize(np.asarray(values, np.uint8), (H, W))
    Image.fromarray(arr).save(path)
    return arr


def make(root: Path, dataset: str, raw_values) -> dict:
    """Write a fixture; returns {image path: raw label array}."""
    out = {}
    if dataset == "ade20k_150":
        for i, sub in enumerate(("training", "validation")):
            img = root / "images" / sub / f"ADE_{sub[:5]}_0000000{i}.jpg"
            _img(img, i)
            out[img] = _lab(root / "annotations" / sub / f"ADE_{sub[:5]}_0000000{i}.png", raw_values)
    elif dataset in ("cityscapes_19",):
        for i, city in enumerate(("aachen", "bochum")):
            stem = f"{city}_000000_00001{i}"
            img = root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png"
            _img(img, i)
            out[img] = _lab(root / "gtFine" / "train" / city / f"{stem}_gtFine_labelTrainIds.png", raw_values)
            # the other gtFine files mmseg does not read sit beside it
            _lab(root / "gtFine" / "train" / city / f"{stem}_gtFine_labelIds.png", [7])
    elif dataset == "coco_stuff_171":
        for i in range(2):
            img = root / "images" / "train2017" / f"{i:012d}.jpg"
            _img(img, i)
            _lab(root / "annotations" / "train2017" / f"{i:012d}.png", [3])   # the raw map stays beside it
            out[img] = _lab(root / "annotations" / "train2017" / f"{i:012d}_labelTrainIds.png", raw_values)
    elif dataset == "pascal_context_59":
        stems = ["2008_000002", "2008_000003"]
        for i, s in enumerate(stems):
            img = root / "JPEGImages" / f"{s}.jpg"
            _img(img, i)
            out[img] = _lab(root / "SegmentationClassContext" / f"{s}.png", raw_values)
        _img(root / "JPEGImages" / "2008_000099.jpg", 9)  # an image outside the split file
        (root / "ImageSets" / "SegmentationContext").mkdir(parents=True)
        (root / "ImageSets" / "SegmentationContext" / "train.txt").write_text("\n".join(stems) + "\n")
    elif dataset == "bdd100k_19":
        for i in range(2):
            img = root / "images" / "10k" / "train" / f"7d2f7975-e0c1c5a{i}.jpg"
            _img(img, i)
            out[img] = _lab(root / "labels" / "sem_seg" / "masks" / "train" / f"7d2f7975-e0c1c5a{i}.png", raw_values)
    else:
        raise KeyError(dataset)
    return out
