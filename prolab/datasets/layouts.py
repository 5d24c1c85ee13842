"""Segmentation datasets on disk: the mmseg layouts of the paper's datasets, the embedded default, and any
folder of images and label maps a user brings.

Pairing follows mmseg 1.x: images are listed recursively by suffix (sorted), the label map of
``<img_dir>/<rel><img_suffix>`` is ``<ann_dir>/<rel><seg_map_suffix>``; with an ``ann_file`` each line is a
stem. Labels are mapped to ``0..C-1`` with 255 = ignore: ``reduce_zero_label`` turns raw 0 into 255 and v
into v-1 (ADE20K, Pascal Context-59); a ``label_map`` renumbers raw values for custom data.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import read_class_names

from ..defaults import IGNORE_INDEX as IGNORE


@dataclass(frozen=True)
class Layout:
    img_dir: str                      # relative to the data root; "{split}" is replaced by the split folder
    ann_dir: str
    img_suffix: str
    seg_map_suffix: str
    reduce_zero_label: bool = False
    ann_file: str | None = None       # list of stems, relative to the data root
    splits: dict = field(default_factory=lambda: {"train": "train", "val": "val"})


LAYOUTS: dict[str, Layout] = {
    "ade20k_150": Layout("images/{split}", "annotations/{split}", ".jpg", ".png", True,
                         splits={"train": "training", "val": "validation"}),
    "cityscapes_19": Layout("leftImg8bit/{split}", "gtFine/{split}", "_leftImg8bit.png", "_gtFine_labelTrainIds.png"),
    "coco_stuff_171": Layout("images/{split}", "annotations/{split}", ".jpg", "_labelTrainIds.png",
                             splits={"train": "train2017", "val": "val2017"}),
    "pascal_context_59": Layout("JPEGImages", "SegmentationClassContext", ".jpg", ".png", True,
                                ann_file="ImageSets/SegmentationContext/{split}.txt"),
    "bdd100k_19": Layout("images/10k/{split}", "labels/sem_seg/masks/{split}", ".jpg", ".png"),
    "synthetic_outdoor": Layout("img_dir/{split}", "ann_dir/{split}", ".png", ".png"),
}


class LayoutError(ValueError):
    """The folders on disk do not match the expected layout."""


def guard_train_folder(folder: Path, train_folder: Path, split: str, dataset: str, allow: bool, fix: str,
                       what: str = "images") -> None:
    """Refuse to evaluate split ``split`` from the training folder itself (a missing ``{split}`` placeholder
    would otherwise make ``--split test`` silently score the training images, or score the split's images
    against the training label maps of the same file names)."""
    if allow or Path(folder).resolve() != Path(train_folder).resolve():
        return
    raise LayoutError(f"{dataset}: the {split!r} split's {what} are the training folder {folder}: its numbers would "
                      f"measure fitting, not generalisation. {fix[0].upper() + fix[1:]}; or, to score the "
                      "training images on purpose, pass --allow_train_folder to `prolab evaluate` "
                      "(allow_train_folder=True in evaluate_runs)")


def _escape(path: Path | str) -> str:
    return str(path).replace("{", "{{").replace("}", "}}")  # a folder name may hold braces; format() must keep them


def spec_layout(spec, img_dir: Path, ann_dir: Path) -> "Layout":
    """The Layout of one split of a dataset YAML (folders already resolved)."""
    return Layout(_escape(img_dir), _escape(ann_dir), spec.img_suffix, spec.seg_map_suffix, spec.reduce_zero_label,
                  splits={})


def _list_pairs(root: Path, layout: Layout, split: str, dataset: str) -> list[tuple[Path, Path]]:
    sub = layout.splits.get(split, split)
    img_dir = root / layout.img_dir.format(split=sub)
    ann_dir = root / layout.ann_dir.format(split=sub)
    for d, what in ((img_dir, "image"), (ann_dir, "label")):
        if not d.is_dir():
            raise LayoutError(f"{dataset}: {what} folder {d} does not exist (expected layout: images in "
                              f"{layout.img_dir.format(split=sub)}/*{layout.img_suffix}, labels in "
                              f"{layout.ann_dir.format(split=sub)}/*{layout.seg_map_suffix}, under {root})")
    if layout.ann_file:
        listing = root / layout.ann_file.format(split=sub)
        if not listing.exists():
            raise LayoutError(f"{dataset}: split file {listing} does not exist")
        stems = [s.strip() for s in listing.read_text().splitlines() if s.strip()]
        pairs = [(img_dir / f"{s}{layout.img_suffix}", ann_dir / f"{s}{layout.seg_map_suffix}") for s in stems]
        missing = [p for pair in pairs for p in pair if not p.exists()]
        if missing:
            raise LayoutError(f"{dataset}: {len(missing)} files listed in {listing.name} are missing, e.g. "
                              f"{', '.join(str(m) for m in missing[:3])}")
        return pairs
    images = sorted(p for p in img_dir.rglob(f"*{layout.img_suffix}") if p.is_file())
    if not images:
        raise LayoutError(f"{dataset}: no *{layout.img_suffix} images under {img_dir}")
    pairs, unmatched = [], []
    for img in images:
        rel = str(img.relative_to(img_dir))[: -len(layout.img_suffix)]
        ann = ann_dir / f"{rel}{layout.seg_map_suffix}"
        (pairs if ann.exists() else unmatched).append((img, ann))
    if unmatched:
        raise LayoutError(f"{dataset}: {len(unmatched)} of {len(images)} images have no label map, e.g. "
                          f"{unmatched[0][0]} (expected {unmatched[0][1]})")
    return pairs


def _decode(path: Path, dataset: str, what: str, read, full: bool = True):
    """Open an image file and apply ``read`` to it; every decoding problem becomes an error naming the file.
    ``full=False`` reads the header only (format and size) and skips the pixel decode."""
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if full:
                im.load()
            return read(im)
    except UnidentifiedImageError:
        raise LayoutError(f"{dataset}: {what} {path} is not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise LayoutError(f"{dataset}: {what} {path} cannot be decoded ({e}); the file is damaged or "
                          "truncated: replace it or remove the pair") from None


class SegmentationDataset:
    """Images and label maps of one split. ``__getitem__`` returns (image uint8 HxWx3, label int64 HxW)
    with labels in ``0..C-1`` and 255 = ignore, before any transform; ``transform`` is applied after."""

    def __init__(self, root: str | Path, layout: Layout, class_names: list[str], split: str = "train",
                 transform=None, label_map: dict[int, int] | None = None, ignore_index: int = IGNORE,
                 name: str = "dataset"):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise LayoutError(f"{name}: data root {self.root} " + ("is a file, not a folder" if self.root.exists()
                                                                   else "does not exist"))
        self.layout, self.class_names, self.split, self.transform, self.name = layout, class_names, split, transform, name
        self.ignore_index = ignore_index
        self.ignore_hint = "pass --ignore_index {value}"  # how to declare an 'unlabelled' value (a YAML says where)
        self.pairs = _list_pairs(self.root, layout, split, name)
        self._lut = self._build_lut(label_map)

    def _build_lut(self, label_map):
        """A 256-entry lookup table from raw label values to training ids (255 = ignore; -1 = invalid)."""
        c = len(self.class_names)
        lut = np.full(256, -1, dtype=np.int64)
        if label_map:
            for raw, tid in label_map.items():
                if not 0 <= int(raw) <= 255:
                    raise ValueError(f"{self.name}: label_map key {raw} is not a raw 8-bit label value (0..255)")
                if tid not in (None, IGNORE, -1) and not 0 <= int(tid) < c:
                    raise ValueError(f"{self.name}: label_map sends {raw} to {tid}, outside the {c} classes")
                lut[int(raw)] = IGNORE if tid in (None, IGNORE, -1) else int(tid)
        elif self.layout.reduce_zero_label:
            lut[0] = IGNORE
            lut[1:c + 1] = np.arange(c)
        else:
            if self.ignore_index < c:
                raise ValueError(f"{self.name}: ignore value {self.ignore_index} is also class {self.ignore_index} "
                                 f"({self.class_names[self.ignore_index]!r}); use reduce_zero_label=True (raw v -> "
                                 "class v-1) or a label_map")
            lut[:c] = np.arange(c)
        lut[self.ignore_index] = IGNORE
        return lut

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, ann_path = self.pairs[i]
        img = _decode(img_path, self.name, "image", lambda im: np.array(im.convert("RGB")))
        raw = _decode(ann_path, self.name, "label map", np.asarray)
        if raw.shape[:2] != img.shape[:2]:
            raise LayoutError(f"{self.name}: size mismatch: image {img_path} is {img.shape[1]}x{img.shape[0]}, "
                              f"label {ann_path} is {raw.shape[1]}x{raw.shape[0]}")
        return img, self._labels(raw, ann_path)

    def _labels(self, raw: np.ndarray, ann_path: Path) -> np.ndarray:
        """Raw label values -> training ids, with an error naming the file and the fix for every bad value."""
        if raw.ndim == 3:
            raise LayoutError(f"{self.name}: label map {ann_path} has {raw.shape[2]} channels; expected a "
                              "single-channel (L or P mode) PNG of class indices")
        if raw.size and (int(raw.max()) > 255 or int(raw.min()) < 0):
            raise LayoutError(f"{self.name}: label map {ann_path} has value {int(raw.max())} ({raw.dtype}); label "
                              "maps must hold class indices 0..255 (8-bit PNG)")
        label = self._lut[raw.astype(np.int64)]
        if (label < 0).any():
            bad = sorted(set(np.unique(raw[label < 0]).tolist()))
            hint = (f"; if {bad[0]} means 'unlabelled', {self.ignore_hint.replace('{value}', str(bad[0]))}" if len(bad) == 1
                    else "; map raw values to classes with a label_map (or declare the 'unlabelled' value as "
                         f"ignore_index)")
            raise LayoutError(f"{self.name}: label map {ann_path} has values {bad[:10]} outside the "
                              f"{len(self.class_names)} classes (0..{len(self.class_names) - 1}) and the ignore "
                              f"value {self.ignore_index}{hint}")
        return label

    def fingerprint(self) -> str:
        """Hash of the split's file list (paths relative to the data root, sizes, mtimes) and label mapping: the
        dataset's part of a run's identity. Cheap: one stat per file, no decode."""
        import hashlib

        h = hashlib.sha256(f"{self.name}|{self.split}|{self._lut.tolist()}".encode())
        for pair in self.pairs:
            for f in pair:
                try:
                    rel = f.relative_to(self.root)
                except ValueError:
                    rel = f
                st = f.stat()  # size and modification time: an edited label map of the same size counts too
                h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def check_files(self, progress: bool = True) -> dict:
        """Check every file before training starts: image headers (format, size) and a full decode of every
        label map (mode, size, values). Raises ``LayoutError`` naming the first bad file. The result is cached
        per file list, sizes and modification times, so an unchanged dataset is checked once."""
        import hashlib
        import json

        from ..progress import tqdm

        from .. import paths
        from ..files import atomic_write_json

        h = hashlib.sha256(json.dumps([self.name, self._lut.tolist()]).encode())
        for img, ann in self.pairs:
            for f in (img, ann):
                try:
                    st = f.stat()
                except OSError as e:
                    raise LayoutError(f"{self.name}: cannot read {f}: {e.strerror}") from None
                h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
        stamp = paths.cache_root() / "checked" / f"{h.hexdigest()[:24]}.json"
        if stamp.exists():
            return {"samples": len(self.pairs), "cached": True}
        labelled = False
        for img_path, ann_path in tqdm(self.pairs, desc=f"checking {self.name} {self.split or ''}".rstrip(),
                                       unit="file", disable=not progress):
            size = _decode(img_path, self.name, "image", lambda im: im.size, full=False)
            raw = _decode(ann_path, self.name, "label map", np.asarray)
            if raw.shape[:2] != (size[1], size[0]):
                raise LayoutError(f"{self.name}: size mismatch: image {img_path} is {size[0]}x{size[1]}, "
                                  f"label {ann_path} is {raw.shape[1]}x{raw.shape[0]}")
            labels = self._labels(raw, ann_path)   # validates every file
            labelled = labelled or bool((labels < len(self.class_names)).any())
        if self.pairs and not labelled:   # training on it would "converge" at loss 0 and report rc 0
            raise LayoutError(f"{self.name}: no pixel of the {len(self.pairs)} label maps of split "
                              f"{self.split or '?'} belongs to a class: every value maps to ignore "
                              f"({self.ignore_index}). Check the label_map / ignore_index of the dataset "
                              f"(e.g. {self.pairs[0][1]})")
        atomic_write_json(stamp, {"dataset": self.name, "samples": len(self.pairs), "root": str(self.root)})
        return {"samples": len(self.pairs), "cached": False}

    def __getitem__(self, i: int):
        img, label = self.load(i)
        # eval transforms ignore the generator; it is seeded by the index so any randomness is reproducible
        return self.transform(img, label, np.random.default_rng(i)) if self.transform else (img, label)

    def validate(self, limit: int | None = None) -> dict:
        """Load every (or the first ``limit``) sample; raises on the first bad file, else returns counts."""
        n = len(self) if limit is None else min(limit, len(self))
        counts = np.zeros(len(self.class_names) + 1, dtype=np.int64)
        for i in range(n):
            _, label = self.load(i)
            v = np.where(label == IGNORE, len(self.class_names), label)
            counts += np.bincount(v.ravel(), minlength=len(counts))
        return {"samples": n, "pixels_per_class": counts[:-1].tolist(), "ignored_pixels": int(counts[-1])}


def open_dataset(dataset: str, root: str | Path, split: str = "train", transform=None, **overrides) -> SegmentationDataset:
    """A registered dataset from its mmseg layout under ``root`` (``overrides`` change Layout fields)."""
    if dataset not in LAYOUTS:
        raise KeyError(f"no on-disk layout registered for {dataset!r}; known: {', '.join(LAYOUTS)}. "
                       "For other data use custom_dataset(...)")
    layout = replace(LAYOUTS[dataset], **overrides) if overrides else LAYOUTS[dataset]
    return SegmentationDataset(root, layout, read_class_names(dataset), split, transform, name=dataset)


def custom_dataset(img_dir: str | Path, ann_dir: str | Path, classes: str | Path | list[str],
                   img_suffix: str = ".jpg", seg_map_suffix: str = ".png", ignore_index: int = IGNORE,
                   label_map: dict[int, int] | None = None, reduce_zero_label: bool = False, transform=None,
                   name: str = "custom") -> SegmentationDataset:
    """Your own data: a folder of images, a folder of label maps (same relative names), a class list.
    (A dataset YAML, ``prolab.datasets.spec``, is the documented way: it names every split's folders.)

    ``ignore_index`` is the raw value that means "not labelled" in your maps (0 or 255 are common);
    ``label_map`` renumbers raw values to class indices (values mapped to 255 are ignored)."""
    names = classes if isinstance(classes, list) else read_class_names(classes)
    img_dir, ann_dir = Path(img_dir).expanduser().absolute(), Path(ann_dir).expanduser().absolute()
    # absolute folders: joining them to the root keeps them as they are
    layout = Layout(_escape(img_dir), _escape(ann_dir), img_suffix, seg_map_suffix, reduce_zero_label, splits={})
    return SegmentationDataset(img_dir.parent, layout, names, "", transform, label_map, ignore_index, name)
