"""Near-collisions, over-shared properties and their repair, on small hand-built property spaces."""
import copy

import numpy as np
import pytest

from prolab.properties import PropertySpace, find_collisions, signatures_from_assignments
from prolab.properties.collisions import (NEAR, NearDefaults, near_collisions, overshared_properties, report_lines,
                                          separate_signatures, signature_report)

D = 12  # embedding dimension of the hand-built spaces


def _e(*pairs):
    """A vector from (axis, weight) pairs."""
    v = np.zeros(D, np.float32)
    for axis, w in pairs:
        v[axis] = w
    return v


def _space(classes, props, descs):
    """A PropertySpace from (class, property, embedding) description rows; centres are member means and each
    class has exactly the properties of its descriptions (as a build would give)."""
    rng = np.random.default_rng(0)
    desc_class = np.array([classes.index(c) for c, _, _ in descs], dtype=np.int64)
    desc_property = np.array([props.index(p) for _, p, _ in descs], dtype=np.int64)
    # a little noise keeps every description distinct
    x = (np.stack([v for _, _, v in descs]) + rng.normal(0, 0.01, (len(descs), D))).astype(np.float32)
    bank = np.stack([x[desc_property == k].mean(0) for k in range(len(props))]).astype(np.float32)
    y = signatures_from_assignments(desc_class, desc_property, len(classes), len(props))
    texts = [f"{c}: {p} {n}" for n, (c, p, _) in enumerate(descs)]
    space = PropertySpace(bank=bank, signatures=y, class_names=list(classes), descriptions=texts,
                          desc_class=desc_class, desc_property=desc_property, property_names=list(props))
    return space.check(), x


# building, fence, road and car are grey (over-shared: 4 of 8 classes); the grey of building and fence lies
# on one side of axis 11, that of road and car on the other. fence is a strict subset of building; one of
# fence's descriptions ("wooden slats") leans towards tree's "wooden". lawn and grass are identical; grass
# leans towards "leafy", lawn towards "asphalt".
CLASSES = ["building", "fence", "sky", "tree", "car", "road", "lawn", "grass"]
PROPS = ["grey", "vertical", "windows", "roof", "blue above", "leafy", "wooden", "wheels", "asphalt", "green blades"]
DESCS = [
    ("building", "grey", _e((0, 1), (11, 1))), ("building", "vertical", _e((1, 1))),
    ("building", "windows", _e((2, 1))), ("building", "roof", _e((3, 1))),
    ("fence", "grey", _e((0, 1), (11, 0.95))), ("fence", "vertical", _e((1, 1), (6, 0.6))),
    ("sky", "blue above", _e((4, 1))),
    ("tree", "leafy", _e((5, 1))), ("tree", "wooden", _e((6, 1))),
    ("car", "grey", _e((0, 1), (11, -1))), ("car", "wheels", _e((7, 1))),
    ("road", "grey", _e((0, 1), (11, -0.95))), ("road", "asphalt", _e((8, 1))),
    ("lawn", "green blades", _e((9, 1), (8, 0.3))), ("grass", "green blades", _e((9, 1), (5, 0.4))),
]


def _built():
    return _space(CLASSES, PROPS, DESCS)


def test_subset_pair_found_with_direction():
    y = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 1]], np.uint8)
    [row] = near_collisions(y, ["building", "fence", "sky"])
    assert (row["a"], row["b"], row["i"], row["j"]) == ("building", "fence", 0, 1)
    assert row["subset"] == "b<a" and row["reasons"] == ["subset"]  # cosine 2/sqrt(8) = 0.71, Hamming 2
    assert row["cosine"] == pytest.approx(0.7071) and row["hamming"] == 2
    [swapped] = near_collisions(y[[1, 0, 2]])
    assert swapped["subset"] == "a<b" and (swapped["a"], swapped["b"]) == (0, 1)  # indices without names
    # a subset's cosine to its superset is sqrt(|a| / |b|), however far below the threshold
    small = near_collisions(np.array([[1] + [0] * 8, [1] * 9], np.uint8))
    assert small[0]["reasons"] == ["subset"] and small[0]["cosine"] == pytest.approx(1 / 3, abs=1e-4)


def test_hamming_one_and_empty_signatures():
    # an empty signature does not crash (cosine 0) and is not a "subset"; Hamming 1 still reports it
    y = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1]], np.uint8)
    rows = near_collisions(y)
    assert [(r["i"], r["j"], r["reasons"], r["subset"]) for r in rows] == [(0, 1, ["hamming 1"], None)]
    assert rows[0]["cosine"] == 0.0
    [row] = near_collisions(np.array([[1, 1, 0], [1, 1, 1]], np.uint8))
    assert row["hamming"] == 1 and row["reasons"] == ["subset", "cosine", "hamming 1"]


def test_cosine_threshold_respected():
    # 4 shared of 5 each: cosine exactly 0.8, Hamming 2, neither a subset
    y = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 1]], np.uint8)
    [row] = near_collisions(y, cos_threshold=0.8)
    assert row["reasons"] == ["cosine"] and row["cosine"] == 0.8 and row["subset"] is None
    assert near_collisions(y, cos_threshold=0.81) == []
    # 3 shared of 4 and 5: cosine 0.67 < 0.8
    assert near_collisions(np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 1, 1]], np.uint8)) == []
    # highest cosine first
    y3 = np.array([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 0, 1, 0]], np.uint8)
    assert [r["cosine"] for r in near_collisions(y3)] == sorted((r["cosine"] for r in near_collisions(y3)),
                                                               reverse=True)


def test_identical_signatures_are_collisions_not_near():
    y = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], np.uint8)
    assert near_collisions(y) == [] and find_collisions(y) == [[0, 1]]


def test_overshared_property_detected_with_share():
    y = np.zeros((6, 4), np.uint8)
    y[:5, 0] = 1   # 5/6
    y[:3, 1] = 1   # 3/6 = 0.5: at the limit
    y[:2, 2] = 1   # 2/6
    y[:, 3] = 1 - y[:, 0]
    rows = overshared_properties(y)
    assert rows == [{"property": 0, "classes": 5, "share": 0.8333}, {"property": 1, "classes": 3, "share": 0.5}]
    assert [r["property"] for r in overshared_properties(y, max_share=0.6)] == [0]
    # two classes of three is two thirds, but a property on fewer than 3 classes is not over-shared
    assert overshared_properties(np.array([[1], [1], [0]], np.uint8)) == []


def test_signature_report_and_lines():
    space, _ = _built()
    rep = signature_report(space)
    assert rep["collisions"] == [["lawn", "grass"]]
    assert [(n["a"], n["b"], n["subset"]) for n in rep["near"]] == [("building", "fence", "b<a")]
    assert rep["overshared"] == [{"property": 0, "classes": 4, "share": 0.5, "name": "grey"}]
    assert rep["unused"] == [] and [s["name"] for s in rep["singleton"]][:2] == ["windows", "roof"]
    lines = report_lines(rep)
    assert "collision: lawn = grass" in lines and "near: fence < building (cosine 0.71, Hamming 2)" in lines
    assert "over-shared: property 'grey' on 4/8 classes" in lines
    assert not any(line.startswith("over-shared") for line in report_lines(signature_report(
        space, NearDefaults(max_share=0.6))))


def test_separate_signatures_repairs_the_space():
    space, x = _built()
    rows = separate_signatures(space, x)
    assert space.notes["separated"] == rows
    y, names = space.signatures, space.class_names
    space.check()
    assert space.bank.dtype == np.float32 and y.dtype == np.uint8 and space.n_properties == len(PROPS) + 1
    # nothing left to fix: no collision, no near pair, no over-shared property
    rep = signature_report(space)
    assert rep["collisions"] == [] and rep["near"] == [] and rep["overshared"] == []
    # the grey property was split along the descriptions' embeddings: building and fence keep index 0 (the
    # half of its first description), car and road move to the new property 10, with their descriptions
    [split] = [r for r in rows if r["action"] == "split"]
    assert (split["property"], split["property_index"]) == ("grey", 0)
    assert split["cosine_after"] < split["cosine_before"] and "property 10: car, road" in split["detail"]
    assert [names[c] for c in np.flatnonzero(y[:, 0])] == ["building", "fence"]
    assert [names[c] for c in np.flatnonzero(y[:, 10])] == ["car", "road"]
    moved = [space.descriptions[i] for i in np.flatnonzero(space.desc_property == 10)]
    assert [m.split(":")[0] for m in moved] == ["car", "road"]
    assert space.property_names[10] in moved and len(space.property_names) == 11
    assert np.dot(space.bank[10], _e((11, -1))) > 0.5 > np.dot(space.bank[0], _e((11, -1)))
    # fence, the subset of building, gains "wooden": nearest (through "wooden slats") among what both lack
    adds = [(r["class_name"], r["other"], r["property"]) for r in rows if r["action"] == "add"]
    assert ("fence", "building", "wooden") in adds
    # grass gained "leafy" (nearest) to differ from lawn, which made lawn a subset of grass: lawn gains "asphalt"
    assert ("lawn", "grass", "asphalt") in adds and y[names.index("grass"), PROPS.index("leafy")] == 1
    assert all(r["property"] is not None for r in rows)  # every pair was separated
    # the identical pair was made unique first
    assert [(r["class_name"], r["other"]) for r in rows if r["action"] == "unique"] == [("grass", "lawn")]
    # each class has exactly the properties of its descriptions plus the reported additions
    expected = signatures_from_assignments(space.desc_class, space.desc_property, space.n_classes, space.n_properties)
    for r in rows:
        if r["action"] in ("add", "unique"):
            expected[names.index(r["class_name"]), r["property_index"]] = 1
    np.testing.assert_array_equal(y, expected)


def test_separate_signatures_is_deterministic():
    space, x = _built()
    a, b = copy.deepcopy(space), copy.deepcopy(space)
    ra, rb = separate_signatures(a, x), separate_signatures(b, x)
    assert ra == rb and a.property_names == b.property_names
    assert a.bank.tobytes() == b.bank.tobytes() and a.signatures.tobytes() == b.signatures.tobytes()
    assert a.desc_property.tobytes() == b.desc_property.tobytes()


def test_inseparable_pair_is_reported_not_raised():
    # K = 2: fence = {0} inside building = {0, 1}; no property is left that both lack
    space, x = _space(["building", "fence"], ["grey", "windows"],
                      [("building", "grey", _e((0, 1))), ("building", "windows", _e((1, 1))),
                       ("fence", "grey", _e((0, 1), (2, 0.1)))])
    before = space.signatures.copy()
    [row] = separate_signatures(space, x)
    assert row["action"] == "add" and row["property"] is None and row["class_name"] == "fence"
    assert "stay near" in row["detail"] and row["cosine_after"] == row["cosine_before"] == pytest.approx(0.7071)
    np.testing.assert_array_equal(space.signatures, before)
    # with no budget, a separable pair is reported too
    space, x = _built()
    rows = separate_signatures(space, x, NearDefaults(max_added=0))
    assert any(r["property"] is None and {r["class_name"], r["other"]} == {"fence", "building"} for r in rows)


def test_property_whose_descriptions_cannot_be_split_is_skipped():
    same = _e((0, 1))
    space, _ = _space(["a", "b", "c"], ["grey", "x", "y", "z"],
                      [("a", "grey", same), ("b", "grey", same), ("c", "grey", same), ("a", "x", _e((1, 1))),
                       ("b", "y", _e((2, 1))), ("c", "z", _e((3, 1)))])
    x = np.stack([same, same, same, _e((1, 1)), _e((2, 1)), _e((3, 1))])  # three identical grey descriptions
    rows = separate_signatures(space, x, NEAR)
    assert [r["action"] for r in rows] == ["split"] and "not split" in rows[0]["detail"]
    assert space.n_properties == 4 and space.signatures[:, 0].tolist() == [1, 1, 1]


def test_pulling_apart_never_creates_a_collision():
    # a = {0} lies inside b = {0, 1} and c = {0, 2}: the only property a could gain against b makes it c, and
    # the other way round, so both pairs stay near (the shared property is not split: max_share above 1)
    space, x = _space(["a", "b", "c"], ["p0", "p1", "p2"],
                      [("a", "p0", _e((0, 1))), ("b", "p0", _e((0, 1), (1, 0.2))), ("b", "p1", _e((1, 1))),
                       ("c", "p0", _e((0, 1), (2, 0.2))), ("c", "p2", _e((2, 1)))])
    before = space.signatures.copy()
    rows = separate_signatures(space, x, NearDefaults(max_share=1.01))
    assert sorted((r["class_name"], r["other"], r["property"]) for r in rows) == [("a", "b", None), ("a", "c", None)]
    np.testing.assert_array_equal(space.signatures, before)
    assert find_collisions(space.signatures) == []
