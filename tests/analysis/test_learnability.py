"""Property learnability: per-property AP against known scores, ranking by skill, pruning a space."""
import numpy as np
import pandas as pd
import pytest
import torch

from prolab.properties import PropertySpace
from prolab.segment import ModelDefaults, SegModel
from prolab.analysis.learnability import (drop_properties, least_learnable, property_ap, pruned_space_path,
                                         save_pruned)

# 3 classes x 4 properties; property 2 belongs to no class
SIG = np.array([[1, 0, 0, 1],
                [0, 1, 0, 1],
                [1, 1, 0, 0]], dtype=np.float32)
T = 0.04


class LogitsModel(torch.nn.Module):
    """A property model whose 'image' is its own logits (K, H, W): the test sets every score by hand."""
    mode = "property"

    def __init__(self, signatures):
        super().__init__()
        self.register_buffer("signatures", torch.as_tensor(signatures))
        self.temperature = T

    def forward(self, x):
        return {"logits": x}


def _data(n_images=2, size=48, seed=0):
    """Items (logits, label): property 0 separates its positives perfectly (tiny margins, to catch saturation),
    property 1 is noise, property 3 is informative but noisy; a band of ignored pixels has the lowest scores."""
    g = np.random.default_rng(seed)
    items = []
    for _ in range(n_images):
        label = g.integers(0, 3, (size, size))
        y = SIG[label]                                          # (H, W, K)
        z = np.zeros((4, size, size), np.float32)
        z[0] = np.where(y[..., 0] > 0, 1.0, 0.9) + g.normal(0, 1e-3, (size, size))
        z[1] = g.normal(size=(size, size))
        z[2] = g.normal(size=(size, size))
        z[3] = y[..., 3] + g.normal(0, 1.0, (size, size))
        label[:4] = 255
        z[0, :4] = -5.0                                          # ignored: would ruin property 0's AP if counted
        items.append((torch.from_numpy(z), torch.from_numpy(label)))
    return items


def test_ap_perfect_noise_and_no_positives():
    data = _data()
    t = property_ap(LogitsModel(SIG), data, names=["a", "b", "c", "d"], max_pixels_per_image=None, progress=False)
    assert list(t.columns) == ["property", "name", "AP", "skill", "positives", "prevalence", "classes"]
    assert t["name"].tolist() == ["a", "b", "c", "d"]
    labs = np.concatenate([lab.numpy().ravel() for _, lab in data])
    labs = labs[labs != 255]
    pos = SIG[labs].sum(0)
    assert t["positives"].tolist() == pos.astype(int).tolist()
    np.testing.assert_allclose(t["prevalence"], pos / labs.size)
    assert t["classes"].tolist() == [2, 2, 0, 2]
    assert t.loc[0, "AP"] == pytest.approx(1.0)                  # perfect separation, ignored pixels left out
    assert t.loc[0, "skill"] == pytest.approx(1.0)
    assert t.loc[1, "AP"] == pytest.approx(t.loc[1, "prevalence"], abs=0.04)   # noise: AP ~ prevalence
    assert abs(t.loc[1, "skill"]) < 0.08
    assert np.isnan(t.loc[2, "AP"]) and t.loc[2, "positives"] == 0          # reported, not dropped
    assert t.loc[1, "skill"] < t.loc[3, "skill"] < t.loc[0, "skill"]


def test_pixel_subsampling_is_bounded_and_seeded():
    data = _data()
    m = LogitsModel(SIG)
    a = property_ap(m, data, max_pixels_per_image=300, seed=1, progress=False)
    b = property_ap(m, data, max_pixels_per_image=300, seed=1, progress=False)
    c = property_ap(m, data, max_pixels_per_image=300, seed=2, progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert not a["AP"].equals(c["AP"])
    assert (a["positives"] / a["prevalence"]).dropna().round().eq(600).all()   # 2 images x 300 pixels
    one = property_ap(m, data, limit=1, max_pixels_per_image=300, seed=1, progress=False)
    assert (one["positives"] / one["prevalence"]).dropna().round().eq(300).all()
    assert a["name"][0] == "property 0"                                   # no names given


def test_constant_activation_of_a_real_model_scores_prevalence():
    """A SegModel whose classifier is zeroed gives one logit everywhere: AP is exactly the prevalence. Also
    checks that 1/4-resolution logits are upsampled to the label's size."""
    torch.manual_seed(0)
    bank = torch.randn(4, 8)
    model = SegModel(3, "property", bank, torch.from_numpy(SIG), T,
                     defaults=ModelDefaults(pretrained=None, channels=16, aux_channels=8, use_aux=False))
    torch.nn.init.zeros_(model.classifier.weight)
    torch.nn.init.zeros_(model.classifier.bias)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(3, 64, 64, generator=g), torch.randint(0, 3, (64, 64), generator=g)) for _ in range(2)]
    t = property_ap(model, data, max_pixels_per_image=None, progress=False)
    assert t["positives"].sum() == sum(SIG[lab.numpy()].sum() for _, lab in data)
    valid = t["AP"].notna()
    np.testing.assert_allclose(t.loc[valid, "AP"], t.loc[valid, "prevalence"], rtol=1e-9)
    with pytest.raises(ValueError, match="label value 7"):
        property_ap(model, [(data[0][0], torch.full((64, 64), 7))], progress=False)
    with pytest.raises(ValueError, match="3 property names"):
        property_ap(model, data, names=["x", "y", "z"], progress=False)


def test_least_learnable_orders_by_skill():
    t = pd.DataFrame({"property": [0, 1, 2, 3, 4], "name": ["rare", "common", "weak", "absent", "chance"],
                      "AP": [0.5, 0.9, 0.3, np.nan, 0.2], "prevalence": [0.01, 0.5, 0.25, 0.0, 0.2]})
    worst = least_learnable(t, 3)
    # skill: rare .495, common .8, weak .067, chance 0; AP - prevalence would rank 'common' below 'rare'
    assert worst["name"].tolist() == ["chance", "weak", "rare"]
    assert worst["skill"].tolist() == pytest.approx([0.0, 0.05 / 0.75, 0.49 / 0.99])
    assert "absent" not in least_learnable(t, 10)["name"].tolist()


def _space():
    """4 classes, 6 properties, two descriptions per class."""
    sig = np.array([[1, 1, 0, 0, 0, 1],
                    [0, 1, 1, 0, 0, 0],
                    [0, 0, 1, 1, 0, 0],
                    [0, 0, 0, 1, 1, 0]], dtype=np.uint8)
    desc_class = np.repeat(np.arange(4), 2)
    desc_property = np.array([0, 5, 1, 2, 2, 3, 3, 4])
    return PropertySpace(bank=np.arange(6 * 8, dtype=np.float32).reshape(6, 8), signatures=sig,
                         class_names=["sky", "road", "tree", "car"],
                         descriptions=[f"d{i}" for i in range(8)], desc_class=desc_class,
                         desc_property=desc_property, property_names=[f"p{j}" for j in range(6)],
                         embedder_id="toy__st", dataset="toy", source={"descriptor_file": "toy.json"}).check()


def test_drop_properties_removes_rows_and_columns():
    space = _space()
    pruned = drop_properties(space, [5, "p1"])
    assert pruned.n_properties == 4 and pruned.check() is pruned
    np.testing.assert_array_equal(pruned.bank, space.bank[[0, 2, 3, 4]])
    np.testing.assert_array_equal(pruned.signatures, space.signatures[:, [0, 2, 3, 4]])
    assert pruned.property_names == ["p0", "p2", "p3", "p4"]
    assert pruned.descriptions == space.descriptions                      # descriptions kept ...
    assert pruned.desc_property.tolist() == [0, -1, -1, 1, 1, 2, 2, 3]    # ... dropped ones unassigned
    assert pruned.source["pruned_from"] == {"content_hash": space.content_hash(), "n_properties": 6,
                                           "dropped": ["p1", "p5"]}
    assert pruned.notes["dropped_properties"][0] == {"index": 1, "name": "p1", "classes": ["sky", "road"]}
    assert space.n_properties == 6 and space.signatures.shape == (4, 6)   # the source is untouched
    # a least_learnable table works as the list
    assert drop_properties(space, pd.DataFrame({"property": [5]})).property_names == [f"p{j}" for j in range(5)]


def test_drop_properties_refuses_empty_classes_and_reports_collisions():
    space = _space()
    with pytest.raises(ValueError, match=r"\['car'\]"):
        drop_properties(space, ["p3", "p4"])
    with pytest.raises(ValueError, match="not in 0..5"):
        drop_properties(space, [6])
    with pytest.raises(ValueError, match="matches 0"):
        drop_properties(space, ["nope"])
    with pytest.warns(UserWarning, match=r"\['road', 'tree'\]"):          # both become [p2] alone
        drop_properties(space, ["p1", "p3"])
    with pytest.raises(ValueError, match="share one signature"):
        drop_properties(space, ["p1", "p3"], collisions="error")


def test_pruned_space_saves_loads_and_fits_a_model(tmp_path):
    space = _space()
    src = space.save(tmp_path / "properties" / "toy" / "toy__toy__st__kmeans-s0-k6.safetensors")
    pruned = drop_properties(space, [5])
    out = save_pruned(pruned, src)
    assert out.parent == src.parent
    assert out.name.startswith("toy__toy__st__kmeans-s0-drop1-") and out.name.endswith("-k5.safetensors")
    assert out == pruned_space_path(src, pruned)                          # the same pruning, the same file
    assert pruned_space_path(src, drop_properties(space, [4])) != out
    back = PropertySpace.load(out)
    np.testing.assert_array_equal(back.bank, pruned.bank)
    np.testing.assert_array_equal(back.signatures, pruned.signatures)
    np.testing.assert_array_equal(back.desc_property, pruned.desc_property)
    assert back.property_names == pruned.property_names
    assert back.source["pruned_from"]["file"] == src.name
    assert back.notes["dropped_properties"][0]["name"] == "p5"
    model = SegModel(back.n_classes, "property", torch.from_numpy(back.bank),
                     torch.from_numpy(back.signatures.astype(np.float32)), T,
                     defaults=ModelDefaults(pretrained=None, channels=16, aux_channels=8)).eval()
    assert model(torch.randn(1, 3, 64, 64))["logits"].shape == (1, 5, 16, 16)
