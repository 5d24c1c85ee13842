import json

import numpy as np
import pytest

from prolab.embed import Embedder, EmbedderUnavailable, EmbeddingCache, make_embedder, resolve_model
from prolab.properties import ClusteringDefaults, PropertySpace, build_property_space, cluster, find_collisions


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))


def _write_descriptors(tmp_path, data):
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(data) + "\n")
    dfile = tmp_path / "descs.json"
    dfile.write_text(json.dumps(data))
    return classes, dfile


@pytest.mark.parametrize("method", ["kmeans", "gmm", "vmf"])
def test_identical_assignments_on_rerun(minilm, method):
    a = build_property_space("cityscapes_19", embedder=minilm, method=method, save=False, progress=False)
    b = build_property_space("cityscapes_19", embedder=minilm, method=method, save=False, progress=False)
    assert np.array_equal(a.space.desc_property, b.space.desc_property)
    assert np.array_equal(a.space.bank, b.space.bank) and np.array_equal(a.space.signatures, b.space.signatures)
    assert a.space.n_properties == 32 - a.clustering.n_empty
    # every description is assigned to an existing property, every class has at least one property
    assert a.space.desc_property.max() < a.space.n_properties and a.space.signatures.sum(1).min() >= 1


def test_release_pooling_equals_hand_computed_mean_pooling():
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = ["A Tall Red Tower", "flat grey surface", "Covered in thick fur and whiskers, usually brown"]
    emb = make_embedder("all-MiniLM-L6-v2", kind="release")
    got = emb.encode(texts)  # batched, padded
    folder = resolve_model("all-MiniLM-L6-v2")[1]
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    for t, row in zip(texts, got):
        ids = tok(t.lower(), return_tensors="pt")  # one sentence, no padding: a plain mean over its tokens
        with torch.inference_mode():
            h = model(**ids).last_hidden_state[0]
        v = h.mean(0)
        v = (v / v.norm()).numpy()
        np.testing.assert_allclose(row, v, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    # MiniLM's own sentence-transformers pipeline is mean pooling + normalisation too
    st = make_embedder("all-MiniLM-L6-v2").encode([t.lower() for t in texts])
    np.testing.assert_allclose(got, st, atol=1e-4)


def test_save_load_round_trip_bit_exact(minilm, tmp_path):
    out = build_property_space("synthetic_outdoor", embedder=minilm, out_root=tmp_path, progress=False)
    loaded = PropertySpace.load(out.path)
    s = out.space
    for name in ("bank", "signatures", "desc_class", "desc_property"):
        a, b = getattr(s, name), getattr(loaded, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    for name in ("class_names", "descriptions", "property_names", "embedder_id", "clustering", "dataset", "source"):
        assert getattr(s, name) == getattr(loaded, name), name
    assert out.path.suffix == ".safetensors" and out.path.with_suffix(".json").exists()


def test_saving_twice_gives_the_same_bytes(minilm, tmp_path):
    """safetensors writes its metadata from a hash map: without sorting, every save of the same space had other
    bytes and another tensors_sha256, so regenerated results churned and hashes keyed on them changed."""
    from safetensors.numpy import load

    from prolab.files import canonical_safetensors

    s = build_property_space("synthetic_outdoor", embedder=minilm, save=False, progress=False).space
    paths = [s.save(tmp_path / f"copy{i}") for i in range(8)]
    assert len({p.read_bytes() for p in paths}) == 1
    assert len({json.loads(p.with_suffix(".json").read_text())["tensors_sha256"] for p in paths}) == 1
    assert PropertySpace.load(paths[0]).n_classes == s.n_classes          # still a valid file
    # the helper itself: any number of keys, the tensors and the metadata unchanged
    from safetensors.numpy import save
    from safetensors import safe_open

    meta = {k: k * 3 for k in "qwertyuiop"}
    blobs = {canonical_safetensors(save({"a": np.arange(5.0), "b": np.eye(2)}, metadata=meta)) for _ in range(20)}
    assert len(blobs) == 1
    (tmp_path / "x.safetensors").write_bytes(blobs.pop())
    with safe_open(tmp_path / "x.safetensors", "np") as f:
        assert f.metadata() == meta
    assert np.array_equal(load((tmp_path / "x.safetensors").read_bytes())["b"], np.eye(2))


def test_release_layout_round_trip(minilm, tmp_path):
    import torch

    s = build_property_space("cityscapes_19", embedder=minilm, save=False, progress=False).space
    f = s.to_release(tmp_path / "bank.pth")
    raw = torch.load(f, weights_only=True)
    bank, labels = raw["embeddings"]
    assert tuple(bank.shape) == (s.dim, s.n_properties) and tuple(labels.shape) == (s.n_properties, s.n_classes)
    back = PropertySpace.from_release(f)
    assert np.array_equal(back.bank, s.bank) and np.array_equal(back.signatures, s.signatures)
    assert back.class_names == s.class_names and back.descriptions == s.descriptions
    assert (back.desc_property == -1).all()
    with pytest.raises(ValueError, match="no descriptions dict"):
        torch.save({"x": 1}, tmp_path / "bad.pth")
        PropertySpace.from_release(tmp_path / "bad.pth")


def test_collision_detected_and_repaired(minilm, tmp_path):
    shared = ["a flat grey surface", "made of concrete slabs", "seen beside roads"]
    data = {"pavement": shared, "walkway": list(shared), "sky": ["blue and open above", "white clouds drift"],
            "tree": ["tall woody trunk", "green leafy crown"]}
    classes, dfile = _write_descriptors(tmp_path, data)
    raw = build_property_space(str(classes), dfile, minilm, n_properties=5, save=False, progress=False)
    assert raw.space.notes["collisions_before"] == [["pavement", "walkway"]]
    fixed = build_property_space(str(classes), dfile, minilm, n_properties=5, repair=True, save=False,
                                 progress=False)
    assert find_collisions(fixed.space.signatures) == [] and fixed.space.notes["collisions_after"] == []
    [row] = fixed.space.notes["collisions_repaired"]
    assert row["class_name"] == "walkway" and row["collided_with"] == ["pavement"]
    k = row["added_property"]
    assert fixed.space.signatures[1, k] == 1 and raw.space.signatures[1, k] == 0
    # only the colliding class changed
    assert np.array_equal(np.delete(fixed.space.signatures, 1, 0), np.delete(raw.space.signatures, 1, 0))


def test_offline_aliases_load_with_hub_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mini = make_embedder("sentence-transformers/all-MiniLM-L6-v2")
    assert mini.dim == 384 and mini.embedder_id == "all-minilm-l6-v2__st"
    mp = make_embedder("all-mpnet-base-v2")
    v = mp.encode(["a red car"])
    assert v.shape == (1, 768) and abs(np.linalg.norm(v) - 1) < 1e-5


def test_unreachable_embedder_names_the_substitutes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderUnavailable, match="all-MiniLM-L6-v2.*all-mpnet-base-v2"):
        make_embedder("BAAI/bge-base-en-v1.5", kind="release")
    with pytest.raises(ValueError, match="unknown embedder kind"):
        make_embedder("all-MiniLM-L6-v2", kind="word2vec")


class CountingEmbedder(Embedder):
    """A deterministic stand-in that counts how many texts it was asked to embed."""
    kind, model_id, dim = "count", "counting", 8

    def __init__(self):
        self.seen = 0

    def encode(self, texts, progress=False):
        self.seen += len(texts)
        rng = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self.dim) for t in texts]
        x = np.array(rng, dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_embedding_cache_shared_and_persistent():
    e = CountingEmbedder()
    c = EmbeddingCache(e.embedder_id)
    a = c.encode(e, ["x", "y", "x"])
    assert e.seen == 2 and np.array_equal(a[0], a[2])
    b = EmbeddingCache(e.embedder_id).encode(e, ["y", "x", "z"])  # a new instance reads the shards
    assert e.seen == 3
    np.testing.assert_array_equal(b[:2], a[[1, 0]])


def test_clustering_drops_empty_clusters():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    low = cluster(x, 20, ClusteringDefaults(method="vmf", kappa=1.0))   # low concentration: mass collapses
    assert low.n_empty > 0
    assert low.centres.shape[0] == 20 - low.n_empty == len(np.unique(low.labels))
    assert set(np.unique(low.labels)) == set(range(low.centres.shape[0]))
    np.testing.assert_allclose(low.responsibilities.sum(1), 1, atol=1e-5)
    high = cluster(x, 20, ClusteringDefaults(method="vmf", kappa=200.0))
    assert high.n_empty < low.n_empty
    with pytest.raises(ValueError, match="covariance_type 'full'"):
        cluster(x, 4, ClusteringDefaults(method="gmm", covariance_type="full"))
    with pytest.raises(ValueError, match="n_properties=100"):
        cluster(x, 100)


def test_committed_property_spaces_load():
    from prolab import paths

    files = sorted((paths.repo_root() / "properties").glob("*/*.safetensors"))
    assert {f.parent.name for f in files} >= {"synthetic_outdoor", "cityscapes_19", "bdd100k_19"}
    for f in files:
        s = PropertySpace.load(f)
        assert s.signatures.sum(1).min() >= 1 and len(s.property_names) == s.n_properties


def test_to_release_writes_the_class_names_an_imported_file_used(minilm, tmp_path):
    import torch

    from prolab.describe.descriptors import import_release

    ours = ["tank", "bed", "sky"]
    release = {"storage tank": ["a large container for liquids", "round steel walls", "stands beside factories"],
               "bed ": ["a soft mattress on a frame", "covered with sheets and pillows", "found in bedrooms"],
               "sky": ["blue and open above", "white clouds drift across it", "bright during the day"]}
    src = tmp_path / "ade_release.json"
    src.write_text(json.dumps(release))
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(ours) + "\n")
    with pytest.warns(UserWarning):
        import_release(src, ours, dest=tmp_path / "imported.json")
    s = build_property_space(str(classes), descriptor_file=tmp_path / "imported.json", embedder=minilm,
                             n_properties=4, save=False, progress=False).space
    assert s.class_names == ours and s.source["release_names"] == {"tank": "storage tank", "bed": "bed "}
    raw = torch.load(s.to_release(tmp_path / "bank.pth"), weights_only=True)
    assert list(raw["descriptions"]) == list(release)      # the release's spellings, trailing space included
    plain = torch.load(s.to_release(tmp_path / "plain.pth", release_names=False), weights_only=True)
    assert list(plain["descriptions"]) == ours


def test_a_repaired_space_is_named_so_only_when_the_repair_changed_it(minilm, tmp_path):
    shared = ["a flat grey surface", "made of concrete slabs", "seen beside roads"]
    data = {"pavement": shared, "walkway": list(shared), "sky": ["blue and open above", "white clouds drift"],
            "tree": ["tall woody trunk", "green leafy crown"]}
    classes, dfile = _write_descriptors(tmp_path, data)
    kw = dict(n_properties=5, progress=False, out_root=tmp_path / "spaces")
    plain = build_property_space(str(classes), dfile, minilm, **kw)
    fixed = build_property_space(str(classes), dfile, minilm, repair=True, **kw)
    assert "-repaired" not in plain.path.name and "-repaired" in fixed.path.name
    assert plain.space.notes["collisions_after"] and not fixed.space.notes["collisions_after"]
    # no collision: the repair changes nothing, so the file is the plain one (committed spaces keep their names)
    data["walkway"] = ["narrow paved path", "people walk along it"]
    classes, dfile = _write_descriptors(tmp_path, data)
    a = build_property_space(str(classes), dfile, minilm, **kw)
    b = build_property_space(str(classes), dfile, minilm, repair=True, **kw)
    assert a.path == b.path and "-repaired" not in b.path.name
