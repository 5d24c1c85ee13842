import json
import warnings

import pytest

from prolab import load_class_names
from prolab.describe import export_release, import_release, load_descriptors, load_meta, save_descriptors

# A small file in the release's format: {class_name: [description, ...]} in dataset order, the release's
# own spelling ("storage tank" where mmseg says "tank"). Descriptions written for this test.
RELEASE = {
    "wall": ["a vertical surface", "often painted"],
    "storage tank": ["a large cylindrical container", "made of metal"],
    "sky": ["the space above the ground", "blue by day"],
}


def _release_file(tmp_path):
    f = tmp_path / "release.json"
    f.write_text(json.dumps(RELEASE))
    return f


def test_import_matches_by_index_and_warns_on_renames(tmp_path):
    with pytest.warns(UserWarning, match=r"class 1 is 'storage tank' in the release and 'tank'"):
        data = import_release(_release_file(tmp_path), ["wall", "tank", "sky"], dest=tmp_path / "ours.json")
    assert list(data) == ["wall", "tank", "sky"]
    assert data["tank"] == RELEASE["storage tank"]
    meta = load_meta(tmp_path / "ours.json")
    assert meta["renamed"] == {"1": ["storage tank", "tank"]} and meta["n_descriptions"] == 6


def test_import_export_round_trip(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_release(_release_file(tmp_path), ["wall", "tank", "sky"], dest=tmp_path / "ours.json")
    back = export_release(tmp_path / "ours.json", tmp_path / "back.json")
    assert back.read_text() == _release_file(tmp_path).read_text()  # same bytes as json.dumps wrote them
    assert list(json.loads(back.read_text())) == list(RELEASE)
    # with our names instead
    ours = export_release(tmp_path / "ours.json", tmp_path / "ours_names.json", use_release_names=False)
    assert list(json.loads(ours.read_text())) == ["wall", "tank", "sky"]


def test_import_count_mismatch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="3 classes but the class list has 2"):
        import_release(_release_file(tmp_path), ["wall", "tank"])


def test_load_checks_class_order(tmp_path):
    f = tmp_path / "d.json"
    save_descriptors(f, {"a": ["x"], "b": ["y"]}, {})
    assert load_descriptors(f, ["a", "b"]) == {"a": ["x"], "b": ["y"]}
    with pytest.raises(ValueError, match="class 0 is 'a', the class list says 'b'"):
        load_descriptors(f, ["b", "a"])
    f.write_text('{"a": "not a list"}')
    with pytest.raises(ValueError, match="class 'a' must map to a list"):
        load_descriptors(f)


def test_class_lists():
    ade = load_class_names("ade20k_150")
    assert len(ade) == 150 and ade[7] == "bed"  # mmseg spells it "bed " with a trailing space
    assert len(load_class_names("coco_stuff_171")) == 171
    assert len(load_class_names("pascal_context_59")) == 59
    assert load_class_names("cityscapes_19") == load_class_names("bdd100k_19")
    assert load_class_names("ade20k_150", normalize=False)[7] == "bed "


def test_user_class_lists(tmp_path):
    (tmp_path / "a.txt").write_text("sea_lion\n  red panda \n\n")
    assert load_class_names(tmp_path / "a.txt") == ["sea lion", "red panda"]
    (tmp_path / "b.json").write_text('{"classes": ["x", "y"]}')
    assert load_class_names(tmp_path / "b.json") == ["x", "y"]
    (tmp_path / "c.txt").write_text("cat\ncat \n")
    with pytest.raises(ValueError, match="'cat' appears twice"):
        load_class_names(tmp_path / "c.txt")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        load_class_names("nope")
    (tmp_path / "d.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list of strings"):
        load_class_names(tmp_path / "d.json")
