"""The Triton kernels (segment.fused_triton, the CUDA twin of fused.cpp) against the reference. Without a GPU
they run in Triton's interpreter on CPU tensors (conftest sets TRITON_INTERPRET=1: the same kernel code,
executed with NumPy); on a GPU the same tests run them compiled on CUDA tensors."""
import os

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from prolab.segment import fused  # noqa: E402
from prolab.segment.losses import property_loss  # noqa: E402
from prolab.segment.model import property_class_scores  # noqa: E402


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEV = "cpu" if INTERPRETED else "cuda"
pytestmark = pytest.mark.skipif(not INTERPRETED and not torch.cuda.is_available(),
                                reason="Triton kernels need a CUDA GPU or TRITON_INTERPRET=1")


@pytest.fixture(scope="module")
def tk():
    import prolab.segment.fused_triton as mod

    return mod


def _case(low, full, K=12, C=5, seed=0, ignore=255):
    g = torch.Generator().manual_seed(seed)
    sig = (torch.rand(C, K, generator=g) < 0.3).float()
    sig[torch.arange(C), torch.arange(C) % K] = 1
    z = (0.1 * torch.randn(2, K, *low, generator=g)).to(DEV).requires_grad_()
    lab = torch.randint(0, C, (2, *full), generator=g)
    lab[0, :2] = ignore
    lab[1, :, -1] = ignore
    return z, lab.to(DEV), sig.to(DEV)


def _reference(z, lab, sig, kind, ignore=255):
    up = F.interpolate(z, size=lab.shape[1:], mode="bilinear", align_corners=False)
    ref = property_loss(up, lab, sig, 0.04, kind, ignore_index=ignore)
    return ref, torch.autograd.grad(ref, z)[0]


@pytest.mark.parametrize("kind", ["cos_sigmoid", "bce", "cos"])
@pytest.mark.parametrize("low,full", [((5, 6), (20, 24)), ((7, 5), (30, 17)), ((4, 4), (4, 4))])
def test_triton_loss_equals_upsample_then_loss(tk, kind, low, full):
    z, lab, sig = _case(low, full)
    ref, g_ref = _reference(z, lab, sig, kind)
    n_valid = int((lab != 255).sum())
    out = tk.TritonPropertyLoss.apply(z, lab, sig, 0.04, kind, 255, n_valid)
    (g_out,) = torch.autograd.grad(out, z)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-4, atol=1e-7)


def test_triton_loss_at_the_label_space_of_ade20k(tk):
    """K=256 (padded block exactly full), C=150, 10 -> 40 px, another ignore index."""
    z, lab, sig = _case((10, 10), (40, 40), K=256, C=150, seed=3, ignore=-1)
    ref, g_ref = _reference(z, lab, sig, "cos_sigmoid", ignore=-1)
    out = tk.TritonPropertyLoss.apply(z, lab, sig, 0.04, "cos_sigmoid", -1, int((lab != -1).sum()))
    (g_out,) = torch.autograd.grad(out, z)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-3, atol=1e-8)


def test_triton_full_resolution_scores(tk):
    z, _, sig = _case((7, 5), (30, 17), K=20)
    sig[3] = 0                                                     # no properties: scores 0, as F.normalize
    got = tk.full_resolution_scores(z.detach(), (30, 17), sig, 0.04)
    ref = property_class_scores(F.interpolate(z.detach(), size=(30, 17), mode="bilinear", align_corners=False),
                                sig, 0.04)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_dispatch_sends_the_loss_and_the_scores_to_triton(tk, monkeypatch):
    """What runs on a CUDA tensor, steered onto the interpreted kernels: same values as the reference."""
    if INTERPRETED:
        monkeypatch.setattr(fused, "backend", lambda t: "triton")
    calls = []
    real = tk._launch_loss
    monkeypatch.setattr(tk, "_launch_loss", lambda *a, **k: calls.append(k["backward"]) or real(*a, **k))
    z, lab, sig = _case((5, 6), (20, 24))
    loss = fused.upsampled_property_loss(z, lab, sig, 0.04)
    (g,) = torch.autograd.grad(loss, z)
    ref, g_ref = _reference(z, lab, sig, "cos_sigmoid")
    assert calls == [False, True]
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-7)
    none = torch.full_like(lab, 255)                               # nothing labelled: zero, still differentiable
    assert float(fused.upsampled_property_loss(z, none, sig, 0.04).detach()) == 0
    scores = fused.full_resolution_scores(z.detach(), (20, 24), sig, 0.04)
    assert scores.shape == (2, 5, 20, 24)


def test_backend_choice(monkeypatch):
    assert fused.backend(torch.zeros(1)) == ("cpu" if fused.extension() is not None else None)
    assert fused.backend(torch.zeros(1, device="meta")) is None


@pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_dispatch_and_determinism(monkeypatch):
    z, lab, sig = _case((16, 16), (64, 64), K=256, C=150, seed=3)
    assert fused.backend(z) == "triton"
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    assert fused.backend(z) is None          # atomics are not deterministic: the reference path
