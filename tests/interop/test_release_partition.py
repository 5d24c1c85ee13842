"""The release's property partition (property_<dataset>.json) -> PropertySpace, its report, and the CLI path."""
import hashlib
import json

import numpy as np
import pytest
from conftest import run_prolab

from prolab.datasets import load_class_names
from prolab.properties import PropertySpace
from prolab.embed.embedders import Embedder
from prolab.interop.release import partition_report, partition_report_lines, partition_space, read_partition
from prolab.interop.release.partition import (_ClassMatcher, kit_reference, known_aliases, neighbourhood_overlap,
                                      partition_command, partition_space_path)

CS = load_class_names("cityscapes_19")
ROAD, SIDEWALK, LIGHT, CAR = (CS.index(c) for c in ("road", "sidewalk", "traffic light", "car"))

# 3 properties over 4 classes, in the release's spellings ("road ", "Traffic Light"), one description with ": "
PARTITION = {
    "flat paved surface": ["road : a flat paved surface", "sidewalk: a flat paved walkway"],
    "signal lights": ["Traffic Light: a signal: red, amber and green", "car: has brake lights"],
    "vehicles": ["car: a vehicle with four wheels", "road : used by cars and trucks"],
}
MEMBERS = [["a flat paved surface", "a flat paved walkway"],
           ["a signal: red, amber and green", "has brake lights"],
           ["a vehicle with four wheels", "used by cars and trucks"]]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))


def _write(tmp_path, data, name="property_cityscapes.json"):
    f = tmp_path / name
    f.write_text(data if isinstance(data, str) else json.dumps(data))
    return f


class _Stub(Embedder):
    """Deterministic vectors of very different norms: shows whether members are normalised before averaging."""
    kind, model_id, dim = "stub", "stub", 3

    def encode(self, texts, progress=False):
        return np.array([[len(t), 1.0 + t.count("a"), 0.1] for t in texts], dtype=np.float32)


# -- the space ----------------------------------------------------------------------------------------------------

def test_partition_space_signatures_names_descriptions(tmp_path, minilm):
    f = _write(tmp_path, PARTITION)
    space = partition_space(f, "cityscapes_19", embedder=minilm, progress=False)
    assert space.class_names == CS and space.property_names == list(PARTITION)
    y = np.zeros((19, 3), np.uint8)
    y[ROAD, [0, 2]] = 1
    y[SIDEWALK, 0] = 1
    y[LIGHT, 1] = 1
    y[CAR, [1, 2]] = 1
    np.testing.assert_array_equal(space.signatures, y)
    # descriptions: the text after the first ": ", in class order, each with its class and property
    assert sorted(space.descriptions) == sorted(d for m in MEMBERS for d in m)
    assert list(space.desc_class) == sorted(space.desc_class)
    i = space.descriptions.index("a signal: red, amber and green")
    assert (space.desc_class[i], space.desc_property[i]) == (LIGHT, 1)
    assert space.members(0) == ["road: a flat paved surface", "sidewalk: a flat paved walkway"]
    assert space.descriptions_of("road") == ["a flat paved surface", "used by cars and trucks"]
    assert space.source["release_names"] == {"road": "road ", "sidewalk": "sidewalk", "traffic light": "Traffic Light",
                                             "car": "car"}
    assert space.source["partition_file"] == f.name
    assert space.source["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert space.clustering == {"method": "release_partition"}
    assert space.embedder_id == minilm.embedder_id and space.dataset == "cityscapes_19"
    assert len(space.notes["classes_without_properties"]) == 15 and "sky" in space.notes["classes_without_properties"]


def test_bank_is_mean_of_member_embeddings(tmp_path, minilm):
    space = partition_space(_write(tmp_path, PARTITION), "cityscapes_19", embedder=minilm, progress=False)
    assert space.bank.shape == (3, minilm.dim) and space.bank.dtype == np.float32
    for k, texts in enumerate(MEMBERS):
        x = minilm.encode(texts)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        np.testing.assert_allclose(space.bank[k], x.mean(0), atol=1e-5)
    # the mean of two different unit vectors is shorter than 1: a centre, not a re-normalised direction
    assert (np.linalg.norm(space.bank, axis=1) < 0.999).all()


def test_bank_averages_normalised_embeddings(tmp_path):
    stub = _Stub()
    space = partition_space(_write(tmp_path, PARTITION), "cityscapes_19", embedder=stub, progress=False)
    for k, texts in enumerate(MEMBERS):
        x = stub.encode(texts).astype(np.float64)
        want = (x / np.linalg.norm(x, axis=1, keepdims=True)).mean(0)
        np.testing.assert_allclose(space.bank[k], want, rtol=1e-5)
        assert not np.allclose(space.bank[k], x.mean(0), rtol=1e-2)  # the raw mean differs


def test_saved_space_round_trips(tmp_path):
    space = partition_space(_write(tmp_path, PARTITION), "cityscapes_19", embedder=_Stub(), progress=False)
    path = space.save(partition_space_path(space, tmp_path / "out"))
    assert path.name == "release-partition-property_cityscapes__stub__stub__release-k3.safetensors"
    back = PropertySpace.load(path)
    np.testing.assert_array_equal(back.signatures, space.signatures)
    np.testing.assert_array_equal(back.desc_property, space.desc_property)
    assert back.source["release_names"]["traffic light"] == "Traffic Light"
    assert back.property_names == list(PARTITION)


# -- reading and its errors ---------------------------------------------------------------------------------------

def test_release_spellings_match_our_classes(tmp_path):
    names = ["bed", "windowpane", "potted plant", "traffic light", "tv", "screen door", "screen"]
    f = _write(tmp_path, {"p": ["bed : soft", "windowpane, window: glass", "pottedplant: green: leafy",
                                "Traffic_Light: bright", "TV Monitor: a screen", "screen door, screen: mesh"]})
    part = read_partition(f, names, aliases={"tv monitor": "tv"})
    assert part["release_names"] == {"bed": "bed ", "windowpane": "windowpane, window", "potted plant": "pottedplant",
                                     "traffic light": "Traffic_Light", "tv": "TV Monitor",
                                     "screen door": "screen door, screen"}
    assert part["members"] == [[(0, "soft"), (1, "glass"), (2, "green: leafy"), (3, "bright"), (4, "a screen"),
                                (5, "mesh")]]
    assert part["property_names"] == ["p"]
    with pytest.raises(ValueError, match="TV Monitor"):  # without the alias
        read_partition(f, names)


def test_duplicate_member_is_dropped_once(tmp_path):
    part = read_partition(_write(tmp_path, {"p": ["road: flat", "road : flat", "car: fast"]}), CS)
    assert part["members"] == [[(ROAD, "flat"), (CAR, "fast")]] and part["duplicates_dropped"] == 1


def test_unknown_class_names_class_and_file(tmp_path):
    f = _write(tmp_path, {"p": ["road: flat", "hovercraft: floats on air"]})
    with pytest.raises(ValueError, match="hovercraft") as e:
        read_partition(f, CS)
    assert f.name in str(e.value) and "'p'" in str(e.value)
    with pytest.raises(ValueError, match="hovercraft"):  # partition_space fails before any model loads
        partition_space(f, "cityscapes_19", embedder="no-such-embedder", progress=False)


@pytest.mark.parametrize("entry", ["road - a flat surface", "road:flat", ": no class", "road: ", 42])
def test_malformed_entry(tmp_path, entry):
    f = _write(tmp_path, {"good": ["car: fast"], "bad": ["road: flat", entry]})
    with pytest.raises(ValueError, match="class: description") as e:
        read_partition(f, CS)
    assert f.name in str(e.value) and "'bad'" in str(e.value) and repr(entry)[:10] in str(e.value)


@pytest.mark.parametrize("text, what", [('["road: flat"]', "mapping"), ("{}", "mapping"),
                                        ('{"p": []}', "non-empty list"), ('{"p": "road: flat"}', "non-empty list"),
                                        ("{not json", "not a JSON"),
                                        ('{"p": ["road: a"], "p": ["car: b"]}', "twice")])
def test_malformed_file(tmp_path, text, what):
    f = _write(tmp_path, text)
    with pytest.raises(ValueError, match=what) as e:
        read_partition(f, CS)
    assert f.name in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_partition(tmp_path / "nope.json", CS)



# -- the release's own spellings, every paper dataset -------------------------------------------------------------

# Where the authors' files (lambert-x/ProLab) spell a class differently from the kit's class names (mmseg's,
# stripped), {ours: release}. Read from the release itself: properties/property_ade20k.json and
# property_coco_stuff_164k.json (every "class: description" entry: ADE20K writes "storage tank" for mmseg's "tank"
# and "bed " with mmseg's trailing space, its other 148 classes and all of COCO-Stuff's 171 as mmseg spells them),
# descriptors/descriptors_pascal_context_59_gpt3.5_cluster.json and descriptors_cityscapes_bdd_gpt3.5_cluster.json
# (keys: mmseg's 59 and 19 names, "pottedplant", "tvmonitor", ...; the release ships no partition file for these
# three datasets, so theirs are written here with the class names of the release's descriptor files).
RELEASE_SPELLINGS = {"ade20k_150": {"bed": "bed ", "tank": "storage tank"}, "coco_stuff_171": {},
                     "pascal_context_59": {}, "cityscapes_19": {}, "bdd100k_19": {}}
K_RELEASE = 8


def _release_file(tmp_path, dataset):
    """A partition in the release's format over all classes of ``dataset`` in the release's spellings: class c has
    two descriptions, one in property c % 8 and one in property (c // 8) % 8 (the same one for some classes), the
    entries of each property in a shuffled order. Returns (file, class names, release names, expected members)."""
    names = load_class_names(dataset)
    release = [RELEASE_SPELLINGS[dataset].get(n, n) for n in names]
    rows = [[] for _ in range(K_RELEASE)]
    for c in range(len(names)):
        rows[c % K_RELEASE].append((c, f"trait a of class {c}"))
        rows[(c // K_RELEASE) % K_RELEASE].append((c, f"trait b of class {c}"))
    rng = np.random.default_rng(0)
    rows = [[r[i] for i in rng.permutation(len(r))] for r in rows]
    data = {f"property {k}": [f"{release[c]}: {d}" for c, d in r] for k, r in enumerate(rows)}
    return _write(tmp_path, data, f"property_{dataset}.json"), names, release, rows


@pytest.mark.parametrize("dataset", list(RELEASE_SPELLINGS))
def test_release_spellings_of_every_paper_dataset_read(tmp_path, dataset):
    f, names, release, rows = _release_file(tmp_path, dataset)
    part = read_partition(f, names, dataset=dataset)
    # every class matched, each to its own index: the members are exactly the (class, description) written
    assert part["members"] == rows and part["duplicates_dropped"] == 0
    assert part["release_names"] == dict(zip(names, release))
    matched = [c for r in part["members"] for c, d in r if d.startswith("trait a")]
    assert sorted(matched) == list(range(len(names)))   # each class's "trait a" entry matched once, to itself
    space = partition_space(f, dataset, embedder=_Stub(), progress=False)
    y = np.zeros((len(names), K_RELEASE), np.uint8)
    for c in range(len(names)):
        y[c, [c % K_RELEASE, (c // K_RELEASE) % K_RELEASE]] = 1
    np.testing.assert_array_equal(space.signatures, y)
    assert space.notes["classes_without_properties"] == []
    assert space.source["release_names"] == part["release_names"]


def test_ade20k_storage_tank_is_tank(tmp_path):
    f, names, release, _ = _release_file(tmp_path, "ade20k_150")
    tank = names.index("tank")
    assert release[tank] == "storage tank" and release[names.index("bed")] == "bed "
    part = read_partition(f, names, dataset="ade20k_150")
    assert part["release_names"]["tank"] == "storage tank"
    assert (tank, f"trait a of class {tank}") in part["members"][tank % K_RELEASE]
    # the spelling is known from the dataset's prompt-name table, the kit's one table of ADE20K's fuller names
    assert known_aliases("ade20k_150", names)["storage tank"] == "tank"
    with pytest.raises(ValueError, match="'storage tank'.*--aliases"):   # with no dataset, nothing knows it
        read_partition(f, names)
    # the user's aliases come first
    barrel = names.index("barrel")
    part = read_partition(f, names, aliases={"Storage Tank": "barrel"}, dataset="ade20k_150")
    assert (barrel, f"trait a of class {tank}") in part["members"][tank % K_RELEASE]
    assert "tank" not in part["release_names"]


def test_known_names_never_take_a_class_own_name():
    match = _ClassMatcher(["sky", "sky-other", "tank"], known={"sky": "sky-other", "storage tank": "tank"})
    assert (match("sky"), match("Sky Other"), match("storage_tank"), match("storage tank, tank")) == (0, 1, 2, 2)
    assert match("hovercraft") is None


def test_unknown_release_class_names_file_class_and_aliases(tmp_path):
    names = load_class_names("ade20k_150")
    f = _write(tmp_path, {"p": ["storage tank: holds oil", "hovercraft: floats on air"]}, "property_ade20k.json")
    for call in (lambda: read_partition(f, names, dataset="ade20k_150"),   # fails before any model loads
                 lambda: partition_space(f, "ade20k_150", embedder="no-such-embedder", progress=False)):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert str(f) in msg and "'hovercraft'" in msg and "--aliases 'hovercraft=<class>'" in msg
        assert "prompt_names/ade20k_150.json" in msg and "storage tank" not in msg   # known: not among the unknown
    part = read_partition(f, names, aliases={"hovercraft": "boat"}, dataset="ade20k_150")
    assert part["members"] == [[(names.index("tank"), "holds oil"), (names.index("boat"), "floats on air")]]


def test_partition_command_passes_aliases(tmp_path):
    f = _write(tmp_path, {"p": ["zeppelin: floats", "car: drives"]}, "property_x.json")
    lines = list(partition_command(f, "cityscapes_19", embedder=_Stub(), out_root=tmp_path / "out",
                                   aliases={"zeppelin": "bus"}))
    assert "19 classes, 1 properties, 2 descriptions" in "\n".join(lines)
    space = PropertySpace.load(next((tmp_path / "out" / "cityscapes_19").glob("*.safetensors")))
    assert space.source["release_names"] == {"bus": "zeppelin", "car": "car"}

# -- the report ---------------------------------------------------------------------------------------------------

def _space(members, n_props, names=None, descs="d"):
    """A space from (class, property) pairs: class c's description is f"{descs}{c}-{i}"."""
    names = names or [f"c{i}" for i in range(6)]
    members = sorted(members)
    count = {}
    texts = []
    for c, _ in members:
        texts.append(f"{descs}{c}-{count.setdefault(c, 0)}")
        count[c] += 1
    dc = np.array([c for c, _ in members], np.int64)
    dp = np.array([k for _, k in members], np.int64)
    y = np.zeros((len(names), n_props), np.uint8)
    y[dc, dp] = 1
    return PropertySpace(bank=np.zeros((n_props, 2), np.float32), signatures=y, class_names=names,
                         descriptions=texts, desc_class=dc, desc_property=dp,
                         property_names=[f"p{k}" for k in range(n_props)]).check()


PAIRS_A = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2)]   # classes paired (0,1) (2,3) (4,5)
PAIRS_B = [(0, 0), (1, 0), (2, 1), (4, 1), (3, 2), (5, 2)]   # classes paired (0,1) (2,4) (3,5)


def test_report_statistics():
    r = partition_report(_space(PAIRS_A + [(0, 1)], 3))
    assert (r["classes"], r["properties"], r["descriptions"]) == (6, 3, 7)
    assert r["unique_signatures"] == 4                    # c0 = {p0, p1}, c1 = {p0}, c2 = c3, c4 = c5
    assert r["collisions"] == [["c2", "c3"], ["c4", "c5"]]
    assert r["properties_per_class"] == {"mean": round(7 / 6, 3), "min": 1, "max": 2}
    assert r["descriptions_per_class"] == {"mean": round(7 / 6, 3), "min": 1, "max": 2}
    assert r["classes_without_properties"] == [] and "reference" not in r
    r = partition_report(_space([(0, 0), (1, 0), (2, 1)], 2))
    assert r["classes_without_properties"] == ["c3", "c4", "c5"] and r["collisions"] == [["c0", "c1"]]
    assert r["unique_signatures"] == 3 and r["properties_per_class"]["min"] == 0


def test_report_agreement_known_answers():
    a, b = _space(PAIRS_A, 3), _space(PAIRS_B, 3)
    same = partition_report(a, a, k=1)
    assert same["neighbour_overlap"] == 1.0 and same["ARI"] == 1.0 and same["matched_overlap"] == 1.0
    assert same["neighbour_classes"] == 6
    # relabelling the properties changes nothing
    relabelled = _space([(c, (k + 1) % 3) for c, k in PAIRS_A], 3)
    assert partition_report(a, relabelled, k=1)["ARI"] == 1.0
    r = partition_report(a, b, k=1)
    # nearest neighbours agree for c0 and c1 only; ARI of [0,0,1,1,2,2] vs [0,0,1,2,1,2] = (1 - 0.6)/(3 - 0.6)
    assert r["neighbour_overlap"] == round(2 / 6, 4)
    assert r["ARI"] == round(1 / 6, 4)
    assert r["matched_overlap"] == round(4 / 6, 4)
    # the same descriptions listed in another order align by (class, description)
    shuffled = _space(PAIRS_B, 3)
    order = np.arange(6)[::-1]
    shuffled.descriptions = [shuffled.descriptions[i] for i in order]
    shuffled.desc_class, shuffled.desc_property = shuffled.desc_class[order], shuffled.desc_property[order]
    assert partition_report(a, shuffled, k=1)["ARI"] == round(1 / 6, 4)
    # other descriptions: no ARI, class neighbourhoods still compared
    other = partition_report(a, _space(PAIRS_B, 3, descs="e"), k=1)
    assert other["ARI"] is None and other["matched_overlap"] is None and other["neighbour_overlap"] == round(2 / 6, 4)
    lines = partition_report_lines(other)
    assert "neighbour overlap@1: 0.3333 (over 6 classes)" in lines
    assert any(line.startswith("ARI: n/a") for line in lines)


def test_neighbourhood_overlap_default_k_and_mismatch():
    rng = np.random.default_rng(0)
    y = (rng.random((12, 8)) < 0.4).astype(np.uint8)
    y[:, 0] = 1                                            # no empty signature
    assert neighbourhood_overlap(y, y) == (1.0, 12)
    z = y[rng.permutation(12)]                             # the same signatures given to other classes
    overlap, n = neighbourhood_overlap(y, z)
    assert n == 12 and overlap < 0.8
    with pytest.raises(ValueError, match="other classes"):
        partition_report(_space(PAIRS_A, 3), _space(PAIRS_A, 3, names=list("abcdef")))


def test_report_on_release_partition_identical_and_shuffled(tmp_path):
    stub = _Stub()
    space = partition_space(_write(tmp_path, PARTITION), "cityscapes_19", embedder=stub, progress=False)
    same = partition_report(space, space)
    assert same["neighbour_overlap"] == 1.0 and same["ARI"] == 1.0
    # the same 6 descriptions, dealt to the properties differently
    moved = {"flat paved surface": ["road : a flat paved surface", "Traffic Light: a signal: red, amber and green"],
             "signal lights": ["sidewalk: a flat paved walkway", "car: a vehicle with four wheels"],
             "vehicles": ["car: has brake lights", "road : used by cars and trucks"]}
    other = partition_space(_write(tmp_path, moved, "moved.json"), "cityscapes_19", embedder=stub, progress=False)
    r = partition_report(space, other)
    assert r["ARI"] is not None and r["ARI"] < 1.0
    assert r["neighbour_overlap"] < 1.0 and r["neighbour_classes"] == 4


# -- the CLI ------------------------------------------------------------------------------------------------------

def test_cli_refuses_clustering_flags(tmp_path, capsys):
    from prolab.cli import main

    f = _write(tmp_path, PARTITION)
    assert main(["properties", "--dataset", "cityscapes_19", "--release_partition", str(f), "--n_properties", "5",
                 "--out_root", str(tmp_path / "out")]) == 2
    assert "--n_properties" in capsys.readouterr().err
    bad = _write(tmp_path, {"p": ["zeppelin: floats"]}, "bad.json")
    assert main(["properties", "--dataset", "cityscapes_19", "--release_partition", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "zeppelin" in err and "bad.json" in err
    assert not (tmp_path / "out").exists()


def test_cli_aliases_reach_the_reader(tmp_path, capsys, monkeypatch):
    """`--aliases RELEASE=CLASS` maps a spelling no rule knows; a malformed item or --aliases without
    --release_partition is refused with a message naming it."""
    from prolab import cli

    seen = {}

    def fake(partition, dataset, embedder, embedder_kind, out_root=None, release_export=None, aliases=None):
        seen["aliases"] = aliases
        yield "ok"

    monkeypatch.setattr("prolab.interop.release.partition.partition_command", fake)
    f = _write(tmp_path, {"p": ["zeppelin: floats"]}, "z.json")
    assert cli.main(["properties", "--dataset", "cityscapes_19", "--release_partition", str(f),
                     "--aliases", "zeppelin=car", "--aliases", "lamp post = pole"]) == 0
    assert seen["aliases"] == {"zeppelin": "car", "lamp post": "pole"}
    assert cli.main(["properties", "--dataset", "cityscapes_19", "--release_partition", str(f),
                     "--aliases", "zeppelin"]) == 2
    assert "'zeppelin'" in capsys.readouterr().err
    assert cli.main(["properties", "--dataset", "cityscapes_19", "--aliases", "zeppelin=car"]) == 2
    assert "--release_partition" in capsys.readouterr().err


def test_cli_help_states_default_once():
    import argparse

    from prolab import cli

    parser = argparse.ArgumentParser()
    cli.add_properties(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["properties"]
    action = next(a for a in sub._actions if "--release_partition" in a.option_strings)
    assert action.default is None and action.help.count("(default:") == 1
    assert "%" not in action.help  # argparse would try to format it
    sub.format_help()


def test_cli_end_to_end(tmp_path):
    f = _write(tmp_path, PARTITION)
    out = tmp_path / "out"
    r = run_prolab("properties", "--dataset", "cityscapes_19", "--release_partition", f, "--out_root", out,
                   env={"PROLAB_CACHE": tmp_path / "cache", "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    saved = (out / "cityscapes_19" /
             "release-partition-property_cityscapes__all-minilm-l6-v2__st__release-k3.safetensors")
    assert saved.exists() and saved.with_suffix(".json").exists()
    space = PropertySpace.load(saved)
    assert space.property_names == list(PARTITION) and space.signatures[CAR].tolist() == [0, 1, 1]
    assert space.source["release_names"]["road"] == "road "
    assert str(saved) in r.stdout
    assert "19 classes, 3 properties, 6 descriptions" in r.stdout
    assert "unique signatures: 5 of 19 classes" in r.stdout
    assert "classes without properties (15)" in r.stdout
    if kit_reference("cityscapes_19") is not None:   # the committed default space of cityscapes_19
        assert "neighbour overlap@5:" in r.stdout and "ARI: n/a" in r.stdout
    else:
        assert "no kit space of cityscapes_19" in r.stdout


def test_notebook04_release_section_reports_statistics_and_agreement(tmp_path, minilm):
    from prolab.properties import build_property_space
    from prolab.interop.release import release_agreement_lines

    ours = build_property_space("cityscapes_19", embedder=minilm, save=False, progress=False).space
    assert "release_partition = None" in release_agreement_lines(None, "cityscapes_19", ours)[0]
    lines = release_agreement_lines(_write(tmp_path, PARTITION), "cityscapes_19", ours, embedder=minilm,
                                    progress=False)
    text = "\n".join(lines)
    assert lines[0] == "The authors' partition property_cityscapes.json:"
    assert "19 classes, 3 properties, 6 descriptions" in text and "neighbour overlap@" in text
    assert "classes without properties (15)" in text
    with pytest.raises(FileNotFoundError, match="nope.json"):
        release_agreement_lines(tmp_path / "nope.json", "cityscapes_19", ours)
