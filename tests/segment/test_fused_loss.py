"""The fused property loss (segment.fused: C++ kernel, upsampling + sigmoid + loss from the low-resolution
logits) against the reference (F.interpolate, then losses.property_loss): values and gradients."""
import pytest
import torch
import torch.nn.functional as F

from prolab.segment import fused
from prolab.segment.losses import property_loss
from prolab.segment.supervision import segmentation_loss


def _case(low, full, K=12, C=5, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    sig = (torch.rand(C, K, generator=g) < 0.3).float()
    sig[torch.arange(C), torch.arange(C) % K] = 1                       # every class has a property
    z = (scale * torch.randn(2, K, *low, generator=g)).requires_grad_()
    lab = torch.randint(0, C, (2, *full), generator=g)
    lab[0, :2] = 255                                                    # ignored rows
    lab[1, :, -1] = 255                                                 # and an ignored column
    return z, lab, sig


def _both(z, lab, sig, T, kind):
    ref = property_loss(F.interpolate(z, size=lab.shape[1:], mode="bilinear", align_corners=False), lab, sig, T, kind)
    (g_ref,) = torch.autograd.grad(ref, z)
    out = fused.upsampled_property_loss(z, lab, sig, T, kind, fused=True)
    (g_out,) = torch.autograd.grad(out, z)
    return ref, out, g_ref, g_out


@pytest.mark.parametrize("kind", ["cos_sigmoid", "bce", "cos"])
@pytest.mark.parametrize("low,full", [((5, 6), (20, 24)), ((7, 5), (30, 17)), ((4, 4), (4, 4)), ((3, 9), (11, 40))])
def test_fused_equals_upsample_then_loss(fused_kernels, kind, low, full):
    """Integer and non-integer scale factors, odd sizes, no upsampling, ignored pixels; T = 0.04 as trained."""
    z, lab, sig = _case(low, full, scale=0.1)
    ref, out, g_ref, g_out = _both(z, lab, sig, 0.04, kind)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-4, atol=1e-7)


def test_fused_at_the_bench_shape(fused_kernels):
    """ADE20K-sized label space (K=256, C=150) at 128 px from 32 px logits, batch 2."""
    z, lab, sig = _case((32, 32), (128, 128), K=256, C=150, seed=3)
    ref, out, g_ref, g_out = _both(z, lab, sig, 0.04, "cos_sigmoid")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-3, atol=1e-8)


def test_all_ignored_and_fallbacks(fused_kernels, monkeypatch):
    z, lab, sig = _case((4, 4), (16, 16))
    none = torch.full_like(lab, 255)
    loss = fused.upsampled_property_loss(z, none, sig, 0.04, fused=True)
    assert float(loss) == 0 and loss.requires_grad
    with pytest.raises(ValueError, match="unknown property loss"):
        fused.upsampled_property_loss(z, lab, sig, 0.04, kind="l2")
    with pytest.raises(ValueError, match="has no signature"):
        fused.upsampled_property_loss(z, torch.full_like(lab, 9), sig, 0.04, fused=True)
    # off by environment, or a kernel that cannot be built: the reference path, same value
    calls = []
    monkeypatch.setattr(fused._FusedPropertyLoss, "apply", lambda *a: calls.append(1) or torch.tensor(0.0))
    monkeypatch.setenv("PROLAB_FUSED_LOSS", "0")
    ref = property_loss(F.interpolate(z, size=(16, 16), mode="bilinear", align_corners=False), lab, sig, 0.04)
    torch.testing.assert_close(fused.upsampled_property_loss(z, lab, sig, 0.04), ref)
    monkeypatch.delenv("PROLAB_FUSED_LOSS")
    monkeypatch.setattr(fused, "extension", lambda: None)
    torch.testing.assert_close(fused.upsampled_property_loss(z, lab, sig, 0.04), ref)
    assert calls == []


def test_segmentation_loss_takes_the_fused_path_for_property_logits(fused_kernels, monkeypatch):
    z, lab, sig = _case((8, 8), (32, 32))
    calls = []
    real = fused.upsampled_property_loss
    monkeypatch.setattr(fused, "upsampled_property_loss", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    out = {"kind": "property", "logits": z, "aux_logits": z[:, :, ::2, ::2]}
    loss = segmentation_loss(out, lab, sig, 0.04, "cos_sigmoid", aux_weight=0.4)
    assert [tuple(s) for s in calls] == [(2, 12, 8, 8), (2, 12, 4, 4)]     # main and auxiliary head, low-res
    ref = sum(wt * property_loss(F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False), lab, sig,
                                 0.04) for wt, x in ((1.0, z), (0.4, z[:, :, ::2, ::2])))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)


def test_full_resolution_scores_equal_upsample_then_score(fused_kernels, monkeypatch):
    from prolab.segment import ModelDefaults, SegModel
    from prolab.segment.model import property_class_scores

    z, lab, sig = _case((7, 5), (30, 17), scale=0.1)
    sig[3] = 0                                                           # a class without properties scores 0
    got = fused.full_resolution_scores(z, (30, 17), sig, 0.04)
    ref = property_class_scores(F.interpolate(z, size=(30, 17), mode="bilinear", align_corners=False), sig, 0.04)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    bank = F.normalize(torch.randn(12, 16), dim=1)
    m = SegModel(5, "property", bank, sig, 0.04, defaults=ModelDefaults(pretrained=None, channels=16, aux_channels=8))
    x = torch.randn(1, 3, 64, 48)
    fast = m.eval().predict_scores(x, score_resolution="full")
    monkeypatch.setenv("PROLAB_FUSED_LOSS", "0")
    torch.testing.assert_close(fast, m.predict_scores(x, score_resolution="full"), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="score_resolution"):
        m.predict_scores(x, score_resolution="half")


def test_kernel_source_has_no_cpu_dependent_math():
    """What makes the kernels' bits CPU-independent: no fast-math, no -march=native, FMA contraction off, and no
    libm transcendental in the source (glibc picks exp/log implementations by CPU at run time)."""
    import re

    flags = " ".join(fused.CFLAGS + fused.isa_flags())
    assert "-ffast-math" not in flags and "native" not in flags and "-ffp-contract=off" in flags
    code = re.sub(r"//[^\n]*", "", fused.SOURCE.read_text())
    assert not re.search(r"std::(exp|log|log1p|expf|logf|tanh|pow)\s*\(", code)


def test_sigmoid_and_softplus_accuracy(fused_kernels):
    """The kernel's own exp/log (Cephes polynomials) against torch in float64: BCE and cos-sigmoid losses over a
    wide range of logits agree to float32 precision."""
    z = torch.linspace(-3.5, 3.5, 7 * 16 * 16).reshape(1, 7, 16, 16).double()
    lab = torch.randint(0, 3, (1, 16, 16))
    sig = torch.tensor([[1., 0, 1, 0, 0, 1, 0], [0, 1, 0, 0, 1, 0, 0], [1, 1, 1, 1, 0, 0, 1]])
    for kind in ("bce", "cos_sigmoid"):
        ref = property_loss(z, lab, sig.double(), 0.04, kind)
        out = fused.upsampled_property_loss(z.float(), lab, sig, 0.04, kind, fused=True)
        torch.testing.assert_close(out.double(), ref, rtol=2e-6, atol=1e-7)


@pytest.mark.slow
def test_instruction_set_does_not_change_the_bits(fused_kernels, tmp_path):
    """The AVX2 (x86-64-v3) build and the baseline x86-64 build give identical bits for every kernel: the choice of
    instruction set is a speed choice only (the source has no width-dependent reduction)."""
    from torch.utils.cpp_extension import load

    if not fused.isa_flags():
        pytest.skip("this CPU builds the baseline only; nothing to compare")
    base = load(name="prolab_fused_isa_baseline", sources=[str(fused.SOURCE)], build_directory=str(tmp_path),
                extra_cflags=list(fused.CFLAGS), extra_ldflags=list(fused.LDFLAGS), verbose=False)
    v3 = fused.extension()
    g = torch.Generator().manual_seed(3)
    B, K, C, h, H = 2, 37, 9, 9, 35
    z = torch.randn(B, h, h, K, generator=g) * 0.3
    lab = torch.randint(0, C, (B, H, H), generator=g)
    lab[:, :3] = 255
    sig = (torch.rand(C, K, generator=g) < 0.2).float()
    sig[torch.arange(C), torch.arange(C) % K] = 1
    idx, w, yn = fused._kernel_signatures(sig)
    zc = z.permute(0, 3, 1, 2).contiguous()
    for kind in (0, 1, 2):
        assert torch.equal(base.forward(z, lab, idx, w, yn, 0.04, kind, 255), v3.forward(z, lab, idx, w, yn, 0.04, kind, 255))
        assert torch.equal(base.backward(z, lab, idx, w, yn, 0.04, kind, 255, 1e-3),
                           v3.backward(z, lab, idx, w, yn, 0.04, kind, 255, 1e-3))
    assert torch.equal(base.scores(z, H, H, idx, w, yn, 0.04), v3.scores(z, H, H, idx, w, yn, 0.04))
    assert torch.equal(base.low_resolution_scores(zc, idx, w, yn, 0.04), v3.low_resolution_scores(zc, idx, w, yn, 0.04))
