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


def class_text_embeddings(model, tokenizer, class_names: list[str], template: str | None = None):
    """(C, D): each class name in the evaluation template ("a photo of a {}.") through the model's text tower,
    tokenised to its context length."""
    import torch

    from .captions import EVAL_TEMPLATE

    template = template or EVAL_TEMPLATE
    context = model.config.text_config.max_position_embeddings
    tokens = tokenizer([template.format(n) for n in class_names], padding="max_length", max_length=context,
                       truncation=True, return_tensors="pt")
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.get_text_features(input_ids=tokens["input_ids"].to(device),
                                      attention_mask=tokens["attention_mask"].to(device))
    # transformers 5 returns the text tower's output with the projected features as its pooler_output
    return (out.pooler_output if hasattr(out, "pooler_output") else out).float()


def evaluate_benchmark(model, tokenizer, name: str, root: str | Path, split: str = "val", limit: int | None = None,
                       background: float | None = None, progress: bool = True, **protocol) -> dict:
    """GroupViT's and PGSeg's zero-shot protocol over a benchmark (``zero_shot.sliding_zero_shot`` per image,
    the groups named among every class but background, background by the threshold: PGSeg's for the benchmark
    unless ``background`` is given), scored with the kit's confusion matrix: mIoU, per-class IoU, images."""
    import numpy as np
    import torch

    from ..datasets.transforms import to_tensor
    from ..evaluate.metrics import confusion_matrix, metrics_from_confusion
    from ..progress import tqdm
    from .zero_shot import sliding_zero_shot

    b = _get(name)
    ds = open_benchmark(name, root, split)
    names = benchmark_class_names(name)
    texts = class_text_embeddings(model, tokenizer, names[1:])            # background is not a text
    threshold = b.background if background is None else background
    device = next(model.parameters()).device
    cm = np.zeros((len(names), len(names)), np.int64)
    n = len(ds) if limit is None else min(limit, len(ds))
    model.eval()
    for i in tqdm(range(n), desc=f"zero-shot {name}", disable=not progress):
        image, label = ds.load(i)
        with torch.no_grad():
            pred = sliding_zero_shot(model, to_tensor(image).to(device), texts, background=threshold, **protocol)
        cm += confusion_matrix(pred.cpu().numpy(), label, len(names))
    m = metrics_from_confusion(cm, names)
    return {"benchmark": name, "split": split, "images": n, "background": threshold, "mIoU": round(m["mIoU"], 2),
            "per_class_IoU": {c: round(float(v), 2) for c, v in m["per_class"]["IoU"].items()}}


__all__ = ["Benchmark", "BENCHMARKS", "benchmark_class_names", "open_benchmark", "class_text_embeddings",
           "evaluate_benchmark"]
