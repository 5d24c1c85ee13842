"""What a ``dataset`` value means, decided in one place (``prolab.datasets.resolve``)."""
import pytest

from prolab import paths
from prolab.datasets import DATASETS, dataset_key, load_class_names, palette, resolve, seen_class_names


def test_the_four_meanings(tmp_path):
    assert resolve("synthetic_outdoor").kind == "registered"
    assert resolve("custom").kind == "custom"
    lst = tmp_path / "my_classes.txt"
    lst.write_text("Sky\nRoad_surface\n")
    ref = resolve(str(lst))
    assert (ref.kind, ref.key, ref.class_names()) == ("class_list", "my_classes", ["Sky", "Road surface"])
    spec = tmp_path / "street.yaml"
    spec.write_text("name: street\nimg_dir: images/{split}\nann_dir: labels/{split}\nclasses: [sky, road, car]\n")
    ref = resolve(spec)
    assert (ref.kind, ref.key) == ("yaml", "street")
    assert load_class_names(spec) == ["sky", "road", "car"] == seen_class_names(str(spec))
    assert len(palette(str(spec))) == 3
    with pytest.raises(ValueError, match="custom"):
        resolve("custom").class_names()


def test_a_yaml_and_a_class_list_go_by_their_key():
    assert dataset_key("ade20k_150") == "ade20k_150"
    assert dataset_key("somewhere/new_classes.txt") == "new_classes"


def test_paths_reads_the_registered_names_from_the_class_list_files():
    """paths sits below the datasets package, so it reads the registration from the files that make it."""
    assert paths.registered_dataset_names() == set(DATASETS)
