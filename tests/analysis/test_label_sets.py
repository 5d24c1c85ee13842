"""One property space across two label sets: the coarse variant, the joint space and its views, a model read
through another label set's signatures, and the experiment that compares them."""
import numpy as np
import pytest
import torch

from prolab.datasets import load_class_names
from prolab.datasets.variants import COARSE, fine_to_coarse, write_coarse_variant


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))


def test_coarse_variant_maps_every_fine_label(tmp_path):
    from prolab.datasets.spec import load_spec

    f = write_coarse_variant(tmp_path, progress=False)
    spec = load_spec(f)
    fine = load_class_names("synthetic_outdoor")
    assert list(spec.class_names) == list(COARSE) and fine_to_coarse()["tree"] == "vegetation"
    val = spec.open("val")
    img, lab = val.load(0)
    raw = np.array(__import__("PIL.Image", fromlist=["Image"]).open(val.pairs[0][1]))
    for v in np.unique(raw):
        if v != 255:
            assert (lab[raw == v] == list(COARSE).index(fine_to_coarse()[fine[v]])).all()


def test_joint_space_views_share_the_bank_and_swap_classes(tmp_path, minilm):
    from prolab.describe import RetrievalDefaults, describe_dataset
    from prolab.properties.build import default_descriptor_file
    from prolab.properties.joint import build_joint_space, subset
    from prolab.segment import ModelDefaults, SegModel
    from prolab.analysis.transfer import MappedScores, with_signatures

    yaml_file = str(write_coarse_variant(tmp_path, progress=False))
    coarse = describe_dataset(yaml_file, backend="replay", progress=False, out_root=tmp_path / "d",
                              embedder=minilm, defaults=RetrievalDefaults(min_pooled=8, max_samples=4))
    assert coarse.meta["calls"]["new"] == 0                       # every coarse name is in the committed cache
    joint = build_joint_space({"synthetic_outdoor": default_descriptor_file("synthetic_outdoor"),
                               yaml_file: coarse.path}, embedder=minilm, progress=False)
    s = joint.space
    assert s.class_names[:18] == load_class_names("synthetic_outdoor") and {"vegetation", "terrain"} <= set(s.class_names)
    assert len(s.class_names) == 20                               # shared names (sky, road, car, ...) are one class
    fine, crs = subset(s, "synthetic_outdoor"), subset(s, yaml_file)
    assert crs.class_names == list(COARSE) and np.array_equal(fine.bank, crs.bank)
    assert np.array_equal(crs.signatures[crs.class_names.index("sky")], s.signatures[s.class_names.index("sky")])
    assert sorted(set(crs.desc_class)) == list(range(12))
    model = SegModel(18, "property", torch.from_numpy(fine.bank), torch.from_numpy(fine.signatures.astype(np.float32)),
                     defaults=ModelDefaults(pretrained=None, channels=16, aux_channels=8)).eval()
    x = torch.randn(1, 3, 32, 32)
    swapped = with_signatures(model, crs)
    assert swapped.n_classes == 12 and swapped.predict_scores(x).shape == (1, 12, 32, 32)
    assert model.n_classes == 18                                   # the original is untouched
    mapped = MappedScores(model, fine.class_names, crs.class_names, fine_to_coarse())
    fs, ms = model.predict_scores(x), mapped.predict_scores(x)
    veg = [fine.class_names.index(c) for c in ("grass", "tree", "bush")]
    torch.testing.assert_close(ms[:, 1], fs[:, veg].max(1).values)
    with pytest.raises(ValueError, match="bank"):
        with_signatures(model, s.__class__(**{**s.__dict__, "bank": s.bank + 1}))


@pytest.mark.slow   # trains two models and builds a joint space: about a minute; its parts are tested above
def test_the_label_set_experiment_writes_its_table(tmp_path):
    from prolab.analysis.label_sets import run_label_sets

    runs = run_label_sets(seeds=[0], iters=1, out_dir=tmp_path / "res", progress=False)
    assert len(runs) == 4 and set(runs["how"]) >= {"joint space: coarse signatures, no retraining",
                                                   "trained on the coarse labels"}
    assert runs["mIoU"].notna().all()
    assert (tmp_path / "res" / "tables.md").read_text().count("|") > 10


def test_the_verdict_pairs_the_joint_space_with_the_baselines_of_the_same_label_set():
    import pandas as pd

    from prolab.analysis.label_sets import label_set_verdict

    joint, mapped, own = ("joint space: coarse signatures, no retraining",
                          "fine prediction mapped by the known class map", "its own signatures")
    rows = [{"seed": s, "trained_on": "fine", "scored_on": "coarse", "how": joint, "mIoU": 40.0 + s} for s in (0, 1, 2)]
    rows += [{"seed": s, "trained_on": "fine", "scored_on": "coarse", "how": mapped, "mIoU": m}
             for s, m in ((0, 44.0), (1, 45.5), (2, 45.5))]
    rows += [{"seed": s, "trained_on": "fine", "scored_on": "fine", "how": own, "mIoU": 10.0} for s in (0, 1, 2)]
    text = label_set_verdict(pd.DataFrame(rows))
    assert text.startswith("The joint space on the coarse labels, paired by seed: -4.00 ± 0.29 against")
    assert "(behind, 3 seeds)" in text and own not in text            # the fine-label row is not a baseline
