"""The unseen-class protocol: held-out classes (bank without their descriptions, signatures by assignment,
pixels ignored in training), the class-name-embedding baseline, and calibrated stacking."""
import numpy as np
import pytest
import torch

from prolab.properties import build_property_space, cluster
from prolab.properties.assign import add_classes, nearest_properties
from prolab.segment.losses import name_embedding_loss, upsampled_name_embedding_loss
from prolab.segment.model import ModelDefaults, SegModel
from prolab.train.config import TrainConfig
from prolab.train.build import load_space_for, mask_unseen, run_unseen
from prolab.evaluate.unseen import confusion_at, evaluate_unseen, gzsl_scores, harmonic_mean


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))


def test_held_out_classes_are_assigned_to_a_bank_clustered_without_them(minilm):
    out = build_property_space("synthetic_outdoor", embedder=minilm, unseen=["bus", "boat"], save=False,
                               progress=False)
    s = out.space
    held = [s.class_names.index(c) for c in ("bus", "boat")]
    is_held = np.isin(s.desc_class, held)
    # the bank is exactly what clustering the seen classes' descriptions gives
    seen_only = cluster(out.embeddings[~is_held], s.n_properties)
    np.testing.assert_allclose(s.bank, seen_only.centres, atol=1e-6)
    # each unseen description sits in its nearest property, and the unseen signatures are built from those
    assert (s.desc_property[is_held] == nearest_properties(s.bank, out.embeddings[is_held])).all()
    for c in held:
        assert set(np.flatnonzero(s.signatures[c])) == set(s.desc_property[s.desc_class == c])
    assert s.notes["unseen"] == ["bus", "boat"]
    with pytest.raises(ValueError, match="did you mean 'bus'"):
        build_property_space("synthetic_outdoor", embedder=minilm, unseen=["buss"], save=False, progress=False)


def test_a_run_refuses_a_space_clustered_with_its_unseen_classes(minilm):
    cfg = TrainConfig.demo(run_name="leak", unseen="bus,boat",
                           property_space="properties/synthetic_outdoor/qwen2.5-coder-1.5b-instruct-q4_k_m__"
                                          "structured-d247051e__all-minilm-l6-v2__st__kmeans-s0-k24.safetensors")
    from prolab.datasets import load_class_names

    with pytest.raises(ValueError, match=r"clustered with the descriptions of \['boat', 'bus'\].*--unseen bus,boat"):
        load_space_for(cfg, load_class_names("synthetic_outdoor"))
    assert run_unseen(TrainConfig.demo(unseen="sky"), load_class_names("synthetic_outdoor")) == ["sky", "bus", "boat"]


def test_unseen_pixels_become_ignore():
    labels = torch.tensor([[0, 1, 2], [3, 255, 1]])
    out = mask_unseen(labels, torch.tensor([1, 3]))
    assert out.tolist() == [[0, 255, 2], [255, 255, 255]]
    assert mask_unseen(labels, torch.tensor([], dtype=torch.long)) is labels


def test_a_new_class_gets_the_properties_its_descriptions_fall_in(minilm):
    s = build_property_space("synthetic_outdoor", embedder=minilm, save=False, progress=False).space
    lorry = ["a large vehicle that carries goods on roads", "has big wheels and a cargo box"]
    s2 = add_classes(s, {"lorry": lorry}, embedder=minilm)
    assert s2.class_names[-1] == "lorry" and s2.n_properties == s.n_properties
    np.testing.assert_array_equal(s2.bank, s.bank)                 # the bank (and a trained model) is unchanged
    np.testing.assert_array_equal(s2.signatures[:-1], s.signatures)
    x = minilm.encode(lorry)
    assert set(np.flatnonzero(s2.signatures[-1])) == set(nearest_properties(s.bank, x))
    with pytest.raises(ValueError, match="already in the space"):
        add_classes(s, {"car": lorry}, embedder=minilm)


def test_name_embedding_loss_and_scores():
    torch.manual_seed(0)
    names = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    e = torch.randn(2, 8, 5, 6, requires_grad=True)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[0, 0, 0] = 255
    loss = name_embedding_loss(e, labels, names)
    en = torch.nn.functional.normalize(e, dim=1).permute(0, 2, 3, 1)           # dense reference
    valid = labels != 255
    ref = (1 - (en[valid] * names[labels[valid]]).sum(1)).mean()
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert e.grad.abs().sum() > 0 and e.grad[0, :, 0, 0].abs().sum() == 0    # ignored pixel: no gradient
    model = SegModel(4, "name_embedding", name_bank=names, defaults=ModelDefaults(pretrained=None, channels=16,
                                                                                  aux_channels=8))
    # a pixel embedding equal to class 2's name embedding scores class 2 highest, with cosine 1
    scores = model.class_scores(names[2].view(1, 8, 1, 1).expand(1, 8, 2, 2))
    assert scores.argmax(1).eq(2).all() and torch.allclose(scores[:, 2], torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="class-name embeddings"):
        SegModel(5, "name_embedding", name_bank=names, defaults=ModelDefaults(pretrained=None))


@pytest.mark.parametrize("low,full", [((5, 6), (20, 24)), ((7, 5), (30, 17)), ((4, 4), (4, 4)), ((3, 9), (11, 40))])
def test_upsampled_name_embedding_loss_matches_upsample_then_loss(low, full):
    """The low-resolution path equals upsampling the embedding first (value and gradient), at integer and
    non-integer scale factors, odd sizes, no upsampling at all, and with ignored pixels."""
    torch.manual_seed(1)
    names = torch.nn.functional.normalize(torch.randn(6, 16, dtype=torch.float64), dim=1)
    e = torch.randn(2, 16, *low, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 6, (2, *full))
    labels[0, :3] = 255
    labels[1, :, -2:] = 255
    up = torch.nn.functional.interpolate(e, size=full, mode="bilinear", align_corners=False)
    ref = name_embedding_loss(up, labels, names)
    (g_ref,) = torch.autograd.grad(ref, e)
    fast = upsampled_name_embedding_loss(e, labels, names)
    (g_fast,) = torch.autograd.grad(fast, e)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(g_fast, g_ref)
    assert torch.autograd.gradcheck(lambda x: upsampled_name_embedding_loss(x, labels[:, :9, :9], names),
                                    (e[:, :, :3, :3].detach().clone().requires_grad_(),))


class _Fixed(torch.nn.Module):
    """A 'model' whose raw class scores are given per image: calibrated stacking checked without training."""

    def __init__(self, scores):
        super().__init__()
        self.scores, self.n_classes = scores, scores[0].shape[0]
        self.w = torch.nn.Parameter(torch.zeros(1))

    def predict_scores(self, x, size, softmax=True):
        i = int(x[0, 0, 0, 0])
        return self.scores[i][None]


class _Data:
    class_names = ["road", "car", "bus"]

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.full((3, 2, 2), float(i)), self.labels[i]


def test_calibrated_stacking_moves_biased_pixels_to_the_unseen_class():
    # every image: road pixels, car pixels and bus pixels; the model's bus score trails car by 0.2 on bus pixels
    lab = torch.tensor([[0, 1], [2, 2]])
    s = torch.zeros(3, 2, 2)
    s[0] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    s[1] = torch.tensor([[0.0, 1.0], [0.9, 0.9]])
    s[2] = torch.tensor([[0.0, 0.5], [0.7, 0.7]])
    model, data = _Fixed([s] * 4), _Data([lab] * 4)
    r = evaluate_unseen(model, data, ["bus"], progress=False)
    unc, cal = r.table.loc["uncalibrated"], r.table.loc["calibrated"]
    assert unc["unseen mIoU"] == 0 and unc["HM"] == 0 and unc["seen mIoU"] == pytest.approx(100 * (1 + 1 / 3) / 2, abs=0.01)
    assert 0.2 < r.gamma <= 0.5 and cal["unseen mIoU"] == 100 and cal["seen mIoU"] == 100 and cal["HM"] == 100
    assert r.n_calibration == 2 and r.n_test == 2
    # the fast path equals the direct rule argmax(s - gamma * seen)
    gaps = tuple(np.tile(a, 1) for a in (np.array([1.0, 0.5, 0.2, 0.2]), np.array([0, 1, 1, 1]),
                                          np.array([2, 2, 2, 2]), np.array([0, 1, 2, 2])))
    direct = (s - 0.3 * torch.tensor([1.0, 1.0, 0.0])[:, None, None]).argmax(0).flatten().numpy()
    cm = confusion_at(0.3, gaps, 3)
    assert cm.sum() == 4 and all(cm[l, p] >= 1 for l, p in zip(lab.flatten().tolist(), direct))
    assert harmonic_mean(50, 0) == 0 and harmonic_mean(40, 60) == pytest.approx(48)
    assert gzsl_scores(cm, data.class_names, ["road", "car"], ["bus"])["unseen mIoU"] == 100


def test_a_tiny_run_with_held_out_classes_scores_the_protocol(tmp_path):
    from prolab.train import train
    from prolab.train.data import eval_split
    from prolab.train.runs import load_trained

    cfg = TrainConfig.demo(run_name="tiny-unseen", mode="name_embedding", unseen="sky", iters=2, batch_size=2,
                           crop_size=64, pretrained=None)
    train(cfg, progress=False)
    model, cfg2, names = load_trained("tiny-unseen")
    assert cfg2.unseen == "sky" and model.mode == "name_embedding"
    data = eval_split(cfg2, "val")
    data.pairs = data.pairs[:4]
    r = evaluate_unseen(model, data, run_unseen(cfg2, names), progress=False)
    assert r.unseen == ["sky", "bus", "boat"] and list(r.table.index) == ["uncalibrated", "calibrated"]
    assert r.table.loc["calibrated", "HM"] >= r.table.loc["uncalibrated", "HM"] or r.gamma == 0


def test_where_pixels_go_names_the_classes_that_took_them():
    from prolab.evaluate.unseen import where_pixels_go

    cm = np.array([[5, 0, 0], [0, 3, 1], [6, 2, 0]])         # rows: ground truth road, car, bus
    t = where_pixels_go(cm, ["road", "car", "bus"], ["bus"]).set_index("class")
    assert t.loc["bus", "pixels"] == 8
    assert t.loc["bus", "predicted as #1"] == "road (75%)" and t.loc["bus", "predicted as #2"] == "car (25%)"
    assert t.loc["bus", "predicted as #3"] == "-"
