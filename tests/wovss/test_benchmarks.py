"""The zero-shot benchmarks' layouts (prolab.wovss.benchmarks), on tiny folders written as mmseg's VOC and
Context converters and GroupViT's COCO-Object script leave them."""
import numpy as np
import pytest
from PIL import Image

from prolab.datasets.layouts import LayoutError
from prolab.wovss.benchmarks import BENCHMARKS, benchmark_class_names, open_benchmark


def _img(path, size=(6, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path)


def _lab(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, np.uint8)).save(path)


def test_class_lists_keep_background_first():
    sizes = {n: len(benchmark_class_names(n)) for n in BENCHMARKS}
    assert sizes == {"voc": 21, "pascal_context": 60, "coco_object": 81}
    assert all(benchmark_class_names(n)[0] == "background" for n in BENCHMARKS)
    assert benchmark_class_names("voc")[15] == "person" and benchmark_class_names("coco_object")[1] == "person"


def test_voc_reads_the_split_file_and_keeps_background_and_boundary(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for stem in ("2007_000032", "2007_000033", "2007_000039"):
        _img(root / "JPEGImages" / f"{stem}.jpg")
    _lab(root / "SegmentationClass" / "2007_000032.png", [[0, 0, 15, 15, 255, 1]] * 4)
    _lab(root / "SegmentationClass" / "2007_000033.png", [[0] * 6] * 4)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n2007_000033\n")
    ds = open_benchmark("voc", root, "val")
    assert len(ds) == 2                                   # the unlabelled JPEG outside the split is not read
    _, label = ds.load(0)
    assert label[0].tolist() == [0, 0, 15, 15, 255, 1]    # background stays class 0, the boundary ignored
    with pytest.raises(LayoutError, match="train"):
        open_benchmark("voc", root, "train")              # no ImageSets/Segmentation/train.txt


def test_coco_object_pairs_instance_train_ids(tmp_path):
    root = tmp_path / "coco"
    _img(root / "images" / "val2017" / "000000000139.jpg")
    _lab(root / "annotations" / "val2017" / "000000000139_instanceTrainIds.png", [[0, 1, 62, 80, 0, 0]] * 4)
    ds = open_benchmark("coco_object", root, "val")
    assert len(ds) == 1 and ds.load(0)[1][0].tolist() == [0, 1, 62, 80, 0, 0]
    with pytest.raises(KeyError, match="unknown zero-shot benchmark 'coco'"):
        open_benchmark("coco", root)
