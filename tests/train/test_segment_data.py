import numpy as np
import pytest
from PIL import Image

from mmseg_fixtures import make
from prolab.datasets.layouts import LayoutError, custom_dataset, open_dataset


def _check(ds, written, expected_fn):
    assert len(ds) == len([p for p in written if p in {i for i, _ in ds.pairs}])
    for i, (img, _) in enumerate(ds.pairs):
        image, label = ds[i]
        assert image.shape == (6, 8, 3) and label.dtype == np.int64
        np.testing.assert_array_equal(label, expected_fn(written[img]))


def test_ade20k_reduce_zero_label(tmp_path):
    written = make(tmp_path, "ade20k_150", [0, 1, 150, 255, 7])
    ds = open_dataset("ade20k_150", tmp_path, "train")
    assert len(ds) == 1 and ds.pairs[0][0].name == "ADE_train_00000000.jpg"
    _, label = ds[0]
    # raw 0 -> ignore, v -> v-1, 255 stays ignore
    np.testing.assert_array_equal(np.unique(label), [0, 6, 149, 255])
    assert len(open_dataset("ade20k_150", tmp_path, "val")) == 1


def test_cityscapes_nested_and_suffixes(tmp_path):
    written = make(tmp_path, "cityscapes_19", [0, 5, 18, 255])
    ds = open_dataset("cityscapes_19", tmp_path, "train")
    assert [p[1].name for p in ds.pairs] == ["aachen_000000_000010_gtFine_labelTrainIds.png",
                                             "bochum_000000_000011_gtFine_labelTrainIds.png"]
    _check(ds, written, lambda raw: raw.astype(np.int64))


def test_coco_stuff_label_train_ids(tmp_path):
    written = make(tmp_path, "coco_stuff_171", [0, 170, 255, 42])
    ds = open_dataset("coco_stuff_171", tmp_path, "train")
    assert all(p[1].name.endswith("_labelTrainIds.png") for p in ds.pairs)
    _check(ds, written, lambda raw: raw.astype(np.int64))


def test_pascal_context_split_file_and_reduce_zero(tmp_path):
    written = make(tmp_path, "pascal_context_59", [0, 1, 59])
    ds = open_dataset("pascal_context_59", tmp_path, "train")
    assert len(ds) == 2  # the image outside train.txt is not used
    _check(ds, written, lambda raw: np.where(raw == 0, 255, raw.astype(np.int64) - 1))


def test_bdd100k(tmp_path):
    written = make(tmp_path, "bdd100k_19", [3, 255, 18])
    _check(open_dataset("bdd100k_19", tmp_path, "train"), written, lambda raw: raw.astype(np.int64))


def test_custom_folder_with_ignore_value_and_label_map(tmp_path):
    imgs, anns = tmp_path / "photos", tmp_path / "masks"
    imgs.mkdir(), anns.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(imgs / f"a{i}.jpg")
        Image.fromarray(np.array([[0, 10, 20, 30, 10]] * 4, np.uint8)).save(anns / f"a{i}.png")
    (tmp_path / "classes.txt").write_text("cat\ndog\nsea lion\n")
    ds = custom_dataset(imgs, anns, tmp_path / "classes.txt", ignore_index=0, label_map={10: 0, 20: 1, 30: 2})
    assert len(ds) == 3 and ds.class_names == ["cat", "dog", "sea lion"]
    _, label = ds[1]
    np.testing.assert_array_equal(label[0], [255, 0, 1, 2, 0])
    stats = ds.validate()
    assert stats["pixels_per_class"] == [24, 12, 12] and stats["ignored_pixels"] == 12


def test_layout_errors_are_clear(tmp_path):
    with pytest.raises(LayoutError, match="data root .* does not exist"):
        open_dataset("ade20k_150", tmp_path / "nowhere")
    (tmp_path / "images" / "training").mkdir(parents=True)
    with pytest.raises(LayoutError, match="label folder .*annotations/training does not exist"):
        open_dataset("ade20k_150", tmp_path)
    make(tmp_path / "c", "cityscapes_19", [1])
    next((tmp_path / "c" / "gtFine").rglob("*labelTrainIds.png")).unlink()
    with pytest.raises(LayoutError, match="1 of 2 images have no label map"):
        open_dataset("cityscapes_19", tmp_path / "c")
    written = make(tmp_path / "b", "bdd100k_19", [19])
    ds = open_dataset("bdd100k_19", tmp_path / "b")
    with pytest.raises(LayoutError, match=r"values \[19\] outside the 19 classes"):
        ds[0]
    lab = next(iter(written)).parents[3] / "labels" / "sem_seg" / "masks" / "train"
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(sorted(lab.glob("*.png"))[0])
    with pytest.raises(LayoutError, match="size mismatch"):
        open_dataset("bdd100k_19", tmp_path / "b")[0]
    p = tmp_path / "p"
    make(p, "pascal_context_59", [1])
    (p / "ImageSets" / "SegmentationContext" / "train.txt").write_text("2008_000002\n2010_999999\n")
    with pytest.raises(LayoutError, match="2 files listed in train.txt are missing, e.g. .*2010_999999.jpg"):
        open_dataset("pascal_context_59", p)
    with pytest.raises(KeyError, match="no on-disk layout registered"):
        open_dataset("imagenet", tmp_path)


def test_synthetic_dataset_is_deterministic_and_hides_unseen_in_training():
    from prolab.datasets import synthetic

    a_img, a_lab = synthetic.render_scene(123)
    b_img, b_lab = synthetic.render_scene(123)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, synthetic.render_scene(124)[0])
    # across a few hundred scenes every class occurs, unseen ones included
    seen = set()
    for s in range(120):
        seen |= set(np.unique(synthetic.render_scene(s)[1]).tolist())
    assert seen >= set(range(18))


def test_custom_folder_mistakes_are_named(tmp_path):
    imgs, anns = tmp_path / "i", tmp_path / "a"
    imgs.mkdir(), anns.mkdir()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(imgs / "x.jpg")
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(anns / "x.png")
    with pytest.raises(ValueError, match="ignore value 0 is also class 0 \\('cat'\\)"):
        custom_dataset(imgs, anns, ["cat", "dog"], ignore_index=0)
    with pytest.raises(ValueError, match="label_map sends 7 to 5, outside the 2 classes"):
        custom_dataset(imgs, anns, ["cat", "dog"], label_map={7: 5})
    ds = custom_dataset(imgs, anns, ["cat", "dog"], ignore_index=0, reduce_zero_label=True)
    assert (ds[0][1] == 255).all()
