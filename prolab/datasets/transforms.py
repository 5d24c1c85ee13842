"""Train and eval transforms, mmseg-style: random rescale, random crop with a cat-max-ratio, flip, photometric
jitter, normalisation, padding. Randomness comes from an explicit ``numpy.random.Generator`` so a training run
can derive it from (seed, iteration, slot) and replay the same batches after a resume."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .layouts import IGNORE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentDefaults:
    scale: tuple[int, int] = (512, 128)       # (long side, short side) before the ratio jitter, as mmseg's Resize
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (128, 128)   # (h, w)
    cat_max_ratio: float = 0.75               # re-draw crops where one class covers more than this
    flip_prob: float = 0.5
    photometric: bool = True


def _resize(img: np.ndarray, label: np.ndarray | None, scale: tuple[int, int], ratio: float = 1.0):
    h, w = img.shape[:2]
    long_side, short_side = scale
    f = min(long_side / max(h, w), short_side / min(h, w)) * ratio
    nh, nw = max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))
    if (nh, nw) == (h, w):
        return img, label
    img = np.array(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    if label is not None:
        label = np.array(Image.fromarray(label.astype(np.uint8)).resize((nw, nh), Image.NEAREST)).astype(np.int64)
    return img, label


def _crop(img, label, size, cat_max_ratio, rng):
    ch, cw = size
    h, w = label.shape
    best = None
    for _ in range(10):
        y = int(rng.integers(0, max(h - ch, 0) + 1))
        x = int(rng.integers(0, max(w - cw, 0) + 1))
        crop = label[y:y + ch, x:x + cw]
        best = (y, x)
        values, counts = np.unique(crop[crop != IGNORE], return_counts=True)
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
    y, x = best
    return img[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def _photometric(t: torch.Tensor, rng) -> torch.Tensor:
    import torchvision.transforms.v2.functional as F

    if rng.random() < 0.5:
        t = F.adjust_brightness(t, float(rng.uniform(0.75, 1.25)))
    if rng.random() < 0.5:
        t = F.adjust_contrast(t, float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.5:
        t = F.adjust_saturation(t, float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.5:
        t = F.adjust_hue(t, float(rng.uniform(-0.05, 0.05)))
    return t


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> normalised float CHW."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (t - mean) / std


class TrainTransform:
    def __init__(self, defaults: AugmentDefaults = AugmentDefaults()):
        self.d = defaults

    def __call__(self, img: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        d = self.d
        img, label = _resize(img, label, d.scale, float(rng.uniform(*d.ratio_range)))
        img, label = _crop(img, label, d.crop_size, d.cat_max_ratio, rng)
        if rng.random() < d.flip_prob:
            img, label = img[:, ::-1], label[:, ::-1]
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        if d.photometric:
            t = _photometric(t, rng)
        t = (t.float() / 255.0 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        lab = torch.from_numpy(np.ascontiguousarray(label)).long()
        ch, cw = d.crop_size
        ph, pw = ch - t.shape[1], cw - t.shape[2]
        if ph > 0 or pw > 0:  # pad small images: image with 0 (the mean after normalisation), label with ignore
            t = torch.nn.functional.pad(t, (0, max(pw, 0), 0, max(ph, 0)))
            lab = torch.nn.functional.pad(lab, (0, max(pw, 0), 0, max(ph, 0)), value=IGNORE)
        return t, lab


class EvalTransform:
    """Resize (keep ratio) to the test scale and normalise; labels stay at their original size."""

    def __init__(self, scale: tuple[int, int] = (512, 128)):
        self.scale = scale

    def __call__(self, img: np.ndarray, label: np.ndarray, rng=None):
        img, _ = _resize(img, None, self.scale)
        return to_tensor(img), torch.from_numpy(np.ascontiguousarray(label)).long()
