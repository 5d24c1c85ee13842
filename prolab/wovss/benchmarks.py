"""The zero-shot benchmarks GroupViT and PGSeg report, in the folder layouts their evaluation reads (mmseg's):

- ``voc``: Pascal VOC 2012 val, 21 classes with background as class 0 (``VOCdevkit/VOC2012``: ``JPEGImages/``,
  ``SegmentationClass/``, the split file ``ImageSets/Segmentation/val.txt``; 255 = the ignored boundary);
- ``pascal_context``: Pascal Context val, 60 classes with background as class 0 (``VOCdevkit/VOC2010``:
  ``JPEGImages/``, ``SegmentationClassContext/`` from mmseg's converter, ``ImageSets/SegmentationContext/val.txt``);
- ``coco_object``: COCO 2017 val as 81 classes, background + the 80 things (``coco``: ``images/val2017/*.jpg``,
  ``annotations/val2017/*_instanceTrainIds.png``, the maps GroupViT's conversion script writes from the
  instance annotations).

Each keeps background as a class (no ``reduce_zero_label``): the protocol predicts it by the threshold
(``zero_shot.BACKGROUND_THRESHOLD``), and the other class names are what the groups are named against. These are
not registered ProLab datasets (those carry descriptions and a property space); ``open_benchmark`` reads them
with the kit's layout reader. The class lists are mmseg's (VOC, Context) and GroupViT's (COCO-Object) names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..datasets.layouts import Layout, SegmentationDataset

LISTS = Path(__file__).resolve().parent / "classlists"


@dataclass(frozen=True)
class Benchmark:
    name: str
    layout: Layout
    class_file: str
    background: float            # PGSeg's threshold (zero_shot.BACKGROUND_THRESHOLD)
    root_hint: str               # where mmseg's and GroupViT's configs put it


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("voc", Layout("JPEGImages", "SegmentationClass", ".jpg", ".png",
                            ann_file="ImageSets/Segmentation/{split}.txt"), "pascal_voc_21.json", 0.95,
              "data/VOCdevkit/VOC2012"),
    Benchmark("pascal_context", Layout("JPEGImages", "SegmentationClassContext", ".jpg", ".png",
                                       ann_file="ImageSets/SegmentationContext/{split}.txt"),
              "pascal_context_60.json", 0.36, "data/VOCdevkit/VOC2010"),
    Benchmark("coco_object", Layout("images/{split}", "annotations/{split}", ".jpg", "_instanceTrainIds.png",
                                    splits={"train": "train2017", "val": "val2017"}), "coco_object_81.json", 0.85,
              "data/coco"),
)}


def benchmark_class_names(name: str) -> list[str]:
    b = _get(name)
    return json.loads((LISTS / b.class_file).read_text(encoding="utf-8"))


def _get(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown zero-shot benchmark {name!r}: one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def open_benchmark(name: str, root: str | Path, split: str = "val") -> SegmentationDataset:
    """The split of a benchmark under ``root`` (e.g. ``data/VOCdevkit/VOC2012``), read as the kit reads every
    mmseg layout: a missing folder or split file is named with the layout expected."""
    b = _get(name)
    return SegmentationDataset(root, b.layout, benchmark_class_names(name), split=split, name=name)


__all__ = ["Benchmark", "BENCHMARKS", "benchmark_class_names", "open_benchmark"]
