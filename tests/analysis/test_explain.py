"""Explanations of property predictions: exact decompositions of the cosine score, lookups, input checks, figures.
Models are tiny and built directly; most have hand-set logits so the numbers can be checked by hand."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prolab.properties import PropertySpace  # noqa: E402
from prolab.segment import ModelDefaults, SegModel, property_class_scores  # noqa: E402
from prolab.analysis.explain import (explain_pixel, explain_region, find_class, find_property,  # noqa: E402
                                    property_maps, why_not)

CLASSES = ["building", "tree", "sky"]
NAMES = ["red brick wall", "green leaves", "rough bark texture", "Blue Sky", "red roof tiles"]
SIG = np.array([[1, 0, 0, 0, 1], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=np.uint8)  # 3 classes x K=5
T = 0.5
SMALL = ModelDefaults(pretrained=None, channels=16, aux_channels=8)


def _space(sig=SIG):
    k = sig.shape[1]
    return PropertySpace(bank=np.random.default_rng(0).normal(size=(k, 8)).astype(np.float32), signatures=sig,
                         class_names=list(CLASSES), descriptions=list(NAMES[:k]),
                         desc_class=np.array([0, 1, 1, 2, 0][:k]), desc_property=np.arange(k),
                         property_names=list(NAMES[:k])).check()


def _model(space, mode="property"):
    torch.manual_seed(0)
    return SegModel(3, mode, torch.from_numpy(space.bank), torch.from_numpy(space.signatures.astype(np.float32)),
                    T, defaults=SMALL)


@pytest.fixture
def handset(monkeypatch):
    """A model whose logits are fixed (1, K, 4, 4) values, for a 16 x 16 image."""
    space = _space()
    model = _model(space)
    z = torch.randn(1, 5, 4, 4, generator=torch.Generator().manual_seed(1)) * 2
    monkeypatch.setattr(model, "forward", lambda images, warmup=False: {"logits": z, "kind": "property"})
    return model, space, z, torch.zeros(3, 16, 16)


def _full(z):
    return F.interpolate(z, size=(16, 16), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("pixel", [(0, 0), (5, 11), (15, 15)])
def test_pixel_contributions_sum_to_the_class_scores(handset, pixel):
    model, space, z, image = handset
    e = explain_pixel(model, space, image, pixel, top=None)
    want = property_class_scores(_full(z), model.signatures, T)[0, :, pixel[0], pixel[1]].numpy()
    np.testing.assert_allclose(e.contributions.sum(1), want, atol=1e-5)
    np.testing.assert_allclose([e.scores[c] for c in CLASSES], want, atol=1e-5)
    order = np.argsort(-want)
    full = model.predict_scores(image[None], score_resolution="full")[0, :, pixel[0], pixel[1]]
    assert e.predicted == CLASSES[int(full.argmax())] == CLASSES[order[0]] and e.runner_up == CLASSES[order[1]]
    # the predicted class's properties carry its whole score; the separating differences sum to the gap
    assert e.supporting["contribution"].sum() == pytest.approx(want[order[0]], abs=1e-5)
    assert set(e.supporting["index"]) == set(np.flatnonzero(SIG[order[0]]))
    assert e.separating["difference"].sum() == pytest.approx(want[order[0]] - want[order[1]], abs=1e-5)
    assert e.gap == pytest.approx(want[order[0]] - want[order[1]], abs=1e-5)
    for r in e.separating.itertuples():
        assert r.favours == (e.predicted if r.difference > 0 else e.runner_up)
    # activations: sigmoid(upsampled z / T) at the pixel
    p = torch.sigmoid(_full(z) / T)[0, :, pixel[0], pixel[1]].numpy()
    np.testing.assert_allclose(e.activations, p, atol=1e-6)
    assert e.predicted in e.summary()


def test_region_averages_activations_then_decomposes(handset):
    model, space, z, image = handset
    mask = np.zeros((16, 16), bool)
    mask[2:9, 3:12] = True
    e = explain_region(model, space, image, mask, top=2)
    p = torch.sigmoid(_full(z) / T)[0][:, torch.from_numpy(mask)].mean(1)
    want = property_class_scores((T * torch.logit(p.double())).float().view(1, 5, 1, 1), model.signatures, T)
    want = want.flatten().numpy()
    np.testing.assert_allclose(e.contributions.sum(1), want, atol=1e-5)
    np.testing.assert_allclose(e.activations, p.numpy(), atol=1e-6)
    assert e.predicted == CLASSES[int(want.argmax())] and e.where == f"region of {mask.sum()} pixels"
    assert len(e.supporting) <= 2 and len(e.separating) <= 2
    # a 0/1 torch mask is the same region
    e2 = explain_region(model, space, image, torch.from_numpy(mask.astype(np.int64)), top=2)
    np.testing.assert_allclose(e2.contributions, e.contributions)


def test_predicted_class_is_the_models_prediction_on_a_real_forward():
    space = _space()
    model = _model(space).train()  # explanations run in eval mode and give the caller's mode back
    image = torch.randn(3, 64, 48, generator=torch.Generator().manual_seed(2))
    model.eval()
    scores = model.predict_scores(image[None], score_resolution="full")[0]
    logits = F.interpolate(model(image[None])["logits"], size=(64, 48), mode="bilinear", align_corners=False)
    cos = property_class_scores(logits, model.signatures, T)[0]
    model.train()
    for r, c in [(0, 0), (10, 40), (33, 7), (63, 47)]:
        e = explain_pixel(model, space, image, (r, c))
        assert e.predicted == CLASSES[int(scores[:, r, c].argmax())]
        np.testing.assert_allclose(e.contributions.sum(1), cos[:, r, c].detach().numpy(), atol=1e-5)
    assert model.training


def test_property_maps_by_name_and_index(handset):
    model, space, z, image = handset
    maps, names = property_maps(model, image, ["bark", 3, "red brick wall"], space)
    assert maps.shape == (3, 16, 16) and names == ["rough bark texture", "Blue Sky", "red brick wall"]
    p = torch.sigmoid(_full(z) / T)[0].numpy()
    np.testing.assert_allclose(maps, p[[2, 3, 0]], atol=1e-6)
    one, _ = property_maps(model, image, "leaves", space)
    assert one.shape == (1, 16, 16)


def test_property_lookup():
    space = _space()
    assert find_property(space, "red brick wall") == 0          # exact
    assert find_property(space, "blue sky") == 3                # case-insensitive substring
    assert find_property(space, "BARK") == 2
    assert find_property(space, np.int64(4)) == 4
    with pytest.raises(ValueError, match="ambiguous.*red brick wall.*red roof tiles"):
        find_property(space, "red")
    with pytest.raises(ValueError, match="no property name contains 'zebra'"):
        find_property(space, "zebra")
    with pytest.raises(ValueError, match="property index 5 is out of range"):
        find_property(space, 5)
    assert find_class(space, "Sky") == 2 and find_class(space, 1) == 1
    with pytest.raises(ValueError, match="unknown class 'car'"):
        find_class(space, "car")


def test_why_not_gap_missing_and_lacking(handset):
    model, space, z, image = handset
    pixel = (6, 6)
    e = explain_pixel(model, space, image, pixel)
    other = next(c for c in CLASSES if c != e.predicted)
    w = why_not(model, space, image, pixel, other, top=None, threshold=0.5)
    assert w.predicted == e.predicted and w.other == other
    assert w.gap == pytest.approx(e.scores[e.predicted] - e.scores[other], abs=1e-12)
    assert w.separating["difference"].sum() == pytest.approx(w.gap, abs=1e-5)
    o, p = CLASSES.index(other), w.activations
    assert set(w.missing["index"]) == {k for k in range(5) if SIG[o, k] and p[k] < 0.5}
    assert set(w.lacking["index"]) == {k for k in range(5) if not SIG[o, k] and p[k] >= 0.5}
    assert list(w.missing["activation"]) == sorted(w.missing["activation"])
    assert list(w.lacking["activation"]) == sorted(w.lacking["activation"], reverse=True)
    # by index, and over a region
    assert why_not(model, space, image, pixel, CLASSES.index(other)).gap == pytest.approx(w.gap)
    mask = np.ones((16, 16), bool)
    r = why_not(model, space, image, mask, other)
    assert r.gap == pytest.approx(explain_region(model, space, image, mask).scores[r.predicted] - r.scores[other])
    assert other in w.summary()


def test_inputs_are_checked(handset):
    model, space, z, image = handset
    with pytest.raises(ValueError, match=r"pixel \(row 16, col 0\) is outside the 16 x 16 image"):
        explain_pixel(model, space, image, (16, 0))
    with pytest.raises(ValueError, match="outside"):
        explain_pixel(model, space, image, (-1, 3))
    with pytest.raises(ValueError, match="mask is empty"):
        explain_region(model, space, image, np.zeros((16, 16), bool))
    with pytest.raises(ValueError, match=r"mask of shape \(8, 8\)"):
        explain_region(model, space, image, np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="unknown class 'car'"):
        why_not(model, space, image, (1, 1), "car")
    with pytest.raises(ValueError, match="ambiguous"):
        property_maps(model, image, ["red"], space)
    with pytest.raises(ValueError, match="image of type"):
        explain_pixel(model, space, torch.zeros(16, 16), (0, 0))
    other = _space(np.array([[1, 1, 0, 0, 1], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=np.uint8))
    with pytest.raises(ValueError, match="not the one this model was trained with"):
        explain_pixel(model, other, image, (0, 0))


def test_category_model_is_refused():
    space = _space()
    model = _model(space, "category")
    with pytest.raises(ValueError, match="explanations need a property-mode run"):
        explain_pixel(model, space, torch.zeros(3, 16, 16), (0, 0))
    with pytest.raises(ValueError, match="property-mode"):
        property_maps(model, torch.zeros(3, 16, 16), [0], space)


def test_figures(handset):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from prolab.reports.figures import contribution_bars, property_activation_maps

    model, space, z, image = handset
    maps, names = property_maps(model, image, [0, 2, "leaves"], space)
    names[1] = "a very long property name that must be wrapped over several lines to stay readable at all"
    fig = property_activation_maps(image, maps, names)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 + 3 + 1  # image, maps, colour bar
    assert all(len(line) <= 24 for line in fig.axes[2].get_title().split("\n"))
    plt.close(fig)
    uint8 = np.zeros((16, 16, 3), np.uint8)
    fig = property_activation_maps(uint8, maps[:1], names[:1])
    assert len(fig.axes) == 3
    plt.close(fig)
    for e in (explain_pixel(model, space, image, (3, 3)), why_not(model, space, image, (3, 3), "sky")):
        fig = contribution_bars(e)
        assert isinstance(fig, Figure) and len(fig.axes) == 1
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert labels and all(len(t) <= 40 for t in labels)
        plt.close(fig)


def test_a_class_added_to_the_bank_is_scored_and_explained_without_retraining(handset):
    from dataclasses import replace

    from prolab.analysis.explain import class_score_maps

    model, space, z, image = handset
    # a fourth class with properties 0 and 1 ('red brick wall', 'green leaves'), as add_classes would make it
    extended = replace(space, signatures=np.concatenate([space.signatures, [[1, 1, 0, 0, 0]]]).astype(np.uint8),
                       class_names=CLASSES + ["ivy wall"])
    scores, names = class_score_maps(model, extended, image)
    assert names[-1] == "ivy wall" and scores.shape == (4, 16, 16)
    sig = torch.tensor(extended.signatures, dtype=torch.float32)
    np.testing.assert_allclose(scores, property_class_scores(_full(z), sig, T)[0].numpy(), atol=1e-5)
    e = explain_pixel(model, extended, image, (3, 3), top=None)
    np.testing.assert_allclose(e.contributions.sum(1), scores[:, 3, 3], atol=1e-5)
    w = why_not(model, extended, image, (3, 3), "ivy wall")
    assert w.other == "ivy wall"
    other_bank = replace(extended, bank=extended.bank + 1)
    with pytest.raises(ValueError, match="not the one this model was trained with"):
        class_score_maps(model, other_bank, image)
