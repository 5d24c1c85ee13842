"""Fused inference (segment.fused): sparse class scores at the logits' resolution and the argmax of the
bilinearly upsampled scores, against the dense reference (property_class_scores, F.interpolate + argmax), and
SegModel.predict against predict_scores(...).argmax for every head."""
import pytest
import torch
import torch.nn.functional as F

from prolab.segment import ModelDefaults, SegModel, fused
from prolab.segment.model import property_class_scores


def _signatures(C, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    sig = (torch.rand(C, K, generator=g) < 0.2).float()
    sig[torch.arange(C), torch.arange(C) % K] = 1
    return sig


@pytest.mark.parametrize("shape", [(2, 12, 5, 7), (1, 12, 1, 1), (3, 40, 9, 4)])
def test_low_resolution_scores_equal_the_dense_scores(fused_kernels, shape):
    B, K, h, w = shape
    sig = _signatures(6, K)
    sig[2] = 0                                           # a class without properties scores 0, as the dense path
    z = 0.1 * torch.randn(shape, generator=torch.Generator().manual_seed(1))
    got = fused.low_resolution_scores(z, sig, 0.04)
    torch.testing.assert_close(got, property_class_scores(z, sig, 0.04), rtol=1e-5, atol=1e-6)
    # soft signatures are not 0/1: the sparse form would change them, so the caller gets the dense path
    assert fused.low_resolution_scores(z, sig * 0.5, 0.04) is None


@pytest.mark.parametrize("low,size", [((5, 6), (20, 24)), ((7, 5), (30, 17)), ((4, 4), (4, 4)), ((9, 8), (5, 3)),
                                      ((1, 1), (3, 2))])
def test_upsample_argmax_equals_interpolate_then_argmax(fused_kernels, low, size):
    """Integer and non-integer scales, no scaling, downscaling, a 1 x 1 map. The kernel blends in another order
    than F.interpolate, so a pixel may differ only where the reference's best two classes tie to rounding."""
    s = torch.randn(2, 7, *low, generator=torch.Generator().manual_seed(2))
    got = fused.upsample_argmax(s, size)
    up = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
    ref = up.argmax(1)
    assert got.shape == ref.shape and got.dtype == torch.int64
    top2 = up.topk(2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]) < 1e-5
    assert torch.equal(got[~near_tie], ref[~near_tie])
    assert near_tie.float().mean() < 0.01
    # exact ties go to the lower class, as torch.argmax does
    flat = torch.zeros(1, 4, *low)
    assert torch.equal(fused.upsample_argmax(flat, size), torch.zeros(1, *size, dtype=torch.int64))


@pytest.mark.parametrize("mode", ["property", "category", "name_embedding"])
def test_predict_equals_the_argmax_of_predict_scores(fused_kernels, mode, monkeypatch):
    torch.manual_seed(0)
    K, C = 24, 5
    bank = F.normalize(torch.randn(K, 16), dim=1)
    m = SegModel(C, mode, bank, _signatures(C, K), 0.04, name_bank=F.normalize(torch.randn(C, 16), dim=1),
                 defaults=ModelDefaults(pretrained=None, channels=16, aux_channels=8)).eval()
    x = torch.randn(2, 3, 64, 48)
    calls = []
    real = fused.upsample_argmax
    monkeypatch.setattr(fused, "upsample_argmax", lambda *a: calls.append(1) or real(*a))
    for size in (None, (50, 37)):
        got = m.predict(x, size=size)
        ref = m.predict_scores(x, size=size).argmax(1)
        assert (got == ref).float().mean() > 0.999
    assert calls == [1, 1]                                # the fused pass ran
    torch.testing.assert_close(m.predict(x, score_resolution="full"),
                               m.predict_scores(x, score_resolution="full").argmax(1))
    monkeypatch.setenv("PROLAB_FUSED_LOSS", "0")          # off: interpolate + argmax, the same classes
    assert (m.predict(x) == m.predict_scores(x).argmax(1)).float().mean() > 0.999
    with pytest.raises(ValueError, match="score_resolution"):
        m.predict(x, score_resolution="half")


def test_sparse_signatures_follow_in_place_edits(fused_kernels):
    sig = _signatures(4, 10)
    idx, w, counts = fused.sparse_signatures(sig)
    assert fused.sparse_signatures(sig)[0] is idx           # cached for the same, unchanged tensor
    sig[0] = 0
    sig[0, 9] = 1                                            # an in-place edit bumps the version: recomputed
    idx2, w2, counts2 = fused.sparse_signatures(sig)
    assert int(counts2[0]) == 1 and int(idx2[0, 0]) == 9
    other = sig.clone()
    assert fused.sparse_signatures(other)[0] is not idx2     # another tensor: recomputed
