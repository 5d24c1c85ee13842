"""ViT-Adapter-B backbone (prolab.segment.vit_adapter): shapes, size, deformable attention against independent
references, gradient flow, DeiT weight loading and layer-wise-decay naming. Fast on one CPU thread."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from prolab.segment.vit_adapter import (PAPER_PARAMS_M, MSDeformAttn, ViTAdapterDefaults, count_parameters,
                                        deformable_sample, grid_centres, load_deit_state, release_layer_id,
                                        vit_adapter_base)

LAYER_RE = r"(?:blocks|stages|layers?)[._](\d+)"   # train.py's layer-wise decay key
# a small adapter with the same structure (4 interactions of one block each) for the slower checks
SMALL = dict(embed_dim=96, depth=4, num_heads=3, deform_num_heads=3, conv_inplane=16,
             interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)))


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return vit_adapter_base().eval()   # random init, the paper's base settings


def strides(outs, h, w):
    return [(o.shape[2], o.shape[3]) for o in outs], [(-(-h // s), -(-w // s)) for s in (4, 8, 16, 32)]


# --- 1. shapes --------------------------------------------------------------------------------------------------

def test_shapes_small_inputs(full):
    assert full.feature_info.channels() == [768] * 4 and full.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        outs = full(torch.randn(1, 3, 64, 64))
    assert isinstance(outs, list) and len(outs) == 4
    assert [tuple(o.shape) for o in outs] == [(1, 768, 16, 16), (1, 768, 8, 8), (1, 768, 4, 4), (1, 768, 2, 2)]
    assert all(torch.isfinite(o).all() for o in outs)
    # a size that is no multiple of 32 is padded inside and cropped back to ceil(H/s) x ceil(W/s)
    with torch.no_grad():
        got, want = strides(full(torch.randn(2, 3, 70, 100)), 70, 100)
    assert got == want == [(18, 25), (9, 13), (5, 7), (3, 4)]


def test_shapes_512(full):
    # ~4-5 s on one thread (measured), so not marked slow
    with torch.no_grad():
        outs = full(torch.randn(1, 3, 512, 512))
    assert [tuple(o.shape) for o in outs] == [(1, 768, s, s) for s in (128, 64, 32, 16)]


def test_padding_does_not_leak_into_the_kept_region():
    # the padding is at the bottom/right: an image whose size is a multiple of 32 gives the same maps as the
    # same image followed by padding rows it would itself have been given (here: 64 vs 50 -> padded to 64)
    torch.manual_seed(1)
    m = vit_adapter_base(**SMALL).eval()
    x = torch.randn(1, 3, 50, 64)
    padded = F.pad(x, (0, 0, 0, 14))
    with torch.no_grad():
        a, b = m(x), m(padded)
    for s, oa, ob in zip((4, 8, 16, 32), a, b):
        assert oa.shape[2] == -(-50 // s)
        torch.testing.assert_close(oa, ob[:, :, :oa.shape[2]])


# --- 2. parameter count ---------------------------------------------------------------------------------------

def test_parameter_count(full):
    from prolab.segment.model import FCNHead, UPerHead

    n = count_parameters(full)
    vit = sum(p.numel() for _, p in full.vit_parameters())
    print(f"ViT-Adapter-B: {n / 1e6:.2f}M parameters (ViT body {vit / 1e6:.2f}M, adapter {(n - vit) / 1e6:.2f}M)")
    # DeiT-B without its classifier, final norm and class token: 85.8M
    assert vit == 85_795_584
    # The release reports 134M for UperNet (512 channels) + FCN auxiliary (256) + ViT-Adapter-B on ADE20K's
    # 150 classes; the backbone alone is not reported. Rebuild that segmentor's heads with our UPerHead/FCNHead
    # (same layers as mmseg's) and require the total within +-1% of 134M: the README rounds to 1M (+-0.4%),
    # and a missing extractor (1.0M) or transposed conv (2.4M) would leave the band
    # (measured: 133.6M).
    heads = [UPerHead([768] * 4, 512), FCNHead(768, 256), nn.Conv2d(512, 150, 1), nn.Conv2d(256, 150, 1)]
    total = n + sum(count_parameters(h) for h in heads)
    print(f"with the UperNet + FCN heads (150 classes): {total / 1e6:.2f}M vs the release's {PAPER_PARAMS_M}M")
    assert abs(total / 1e6 - PAPER_PARAMS_M) / PAPER_PARAMS_M < 0.01
    assert 95e6 < n < 104e6


# --- 3. deformable attention ------------------------------------------------------------------------------------

def test_deform_attn_samples_pixel_centres_exactly():
    torch.manual_seed(2)
    h, w, dim, heads = 5, 6, 8, 2
    attn = MSDeformAttn(dim, n_levels=1, n_heads=heads, n_points=1, value_ratio=1.0).double()
    shifts = [(1, 0), (-1, 2)]   # per head, in pixels (dx, dy); the second leaves the map for some queries
    with torch.no_grad():
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.copy_(torch.tensor(shifts, dtype=torch.float64).flatten())
    feat = torch.randn(1, h * w, dim, dtype=torch.float64)
    query = torch.randn(1, h * w, dim, dtype=torch.float64)       # one query per pixel, at its centre
    ref = grid_centres([(h, w)], dtype=torch.float64)[None, :, None, :]
    out = attn(query, ref, feat, [(h, w)])

    v = attn.value_proj(feat).view(h, w, heads, dim // heads)     # direct indexing of the value map
    want = torch.zeros(h * w, heads, dim // heads, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            for m, (dx, dy) in enumerate(shifts):
                if 0 <= x + dx < w and 0 <= y + dy < h:
                    want[y * w + x, m] = v[y + dy, x + dx, m]
    want = attn.output_proj(want.reshape(1, h * w, dim))
    torch.testing.assert_close(out, want)


def bilinear_reference(value, shapes, loc, weights):
    """Loops over every sample: x = loc_x * W - 0.5 (pixel-centre convention), four neighbours weighted by
    hand, neighbours outside the map contribute zero."""
    B, S, M, Dh = value.shape
    _, Q, _, L, P, _ = loc.shape
    starts = [0]
    for hh, ww in shapes:
        starts.append(starts[-1] + hh * ww)
    out = torch.zeros(B, Q, M, Dh, dtype=value.dtype)
    for b in range(B):
        for q in range(Q):
            for m in range(M):
                for lv, (hh, ww) in enumerate(shapes):
                    for p in range(P):
                        px = loc[b, q, m, lv, p, 0].item() * ww - 0.5
                        py = loc[b, q, m, lv, p, 1].item() * hh - 0.5
                        x0, y0 = math.floor(px), math.floor(py)
                        fx, fy = px - x0, py - y0
                        acc = torch.zeros(Dh, dtype=value.dtype)
                        for xx, yy, wgt in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                                            (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)):
                            if 0 <= xx < ww and 0 <= yy < hh:
                                acc += wgt * value[b, starts[lv] + yy * ww + xx, m]
                        out[b, q, m] += weights[b, q, m, lv, p] * acc
    return out.view(B, Q, M * Dh)


def test_deformable_sample_matches_bilinear_reference():
    torch.manual_seed(3)
    shapes, B, Q, M, Dh, P = [(4, 5), (2, 3)], 2, 6, 2, 3, 3
    value = torch.randn(B, sum(h * w for h, w in shapes), M, Dh, dtype=torch.float64)
    loc = torch.rand(B, Q, M, len(shapes), P, 2, dtype=torch.float64) * 1.4 - 0.2   # some outside [0, 1]
    weights = torch.rand(B, Q, M, len(shapes), P, dtype=torch.float64)
    torch.testing.assert_close(deformable_sample(value, shapes, loc, weights),
                               bilinear_reference(value, shapes, loc, weights))


def test_deform_attn_module_offsets_are_per_level_pixels():
    # the module end to end: offsets from the query, divided by each level's (W, H), softmax over levels x points
    torch.manual_seed(4)
    shapes, dim, M, L, P = [(4, 6), (2, 3)], 12, 2, 2, 3
    attn = MSDeformAttn(dim, L, M, P, value_ratio=0.5).double()
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.5)
        attn.attention_weights.weight.normal_(0, 0.5)
    S = sum(h * w for h, w in shapes)
    feat, query = torch.randn(1, S, dim, dtype=torch.float64), torch.randn(1, 5, dim, dtype=torch.float64)
    ref = torch.rand(1, 5, L, 2, dtype=torch.float64)
    out = attn(query, ref, feat, shapes)

    off = attn.sampling_offsets(query).view(1, 5, M, L, P, 2)
    loc = ref[:, :, None, :, None, :].repeat(1, 1, M, 1, P, 1).clone()
    for lv, (h, w) in enumerate(shapes):
        loc[:, :, :, lv, :, 0] += off[:, :, :, lv, :, 0] / w
        loc[:, :, :, lv, :, 1] += off[:, :, :, lv, :, 1] / h
    wts = attn.attention_weights(query).view(1, 5, M, L * P).softmax(-1).view(1, 5, M, L, P)
    value = attn.value_proj(feat).view(1, S, M, dim // 2 // M)
    want = attn.output_proj(bilinear_reference(value, shapes, loc, wts))
    torch.testing.assert_close(out, want)


# --- 4. gradients ---------------------------------------------------------------------------------------------

def test_gradients_reach_every_part():
    torch.manual_seed(5)
    m = vit_adapter_base(**SMALL).train()
    with torch.no_grad():
        m.interactions[0].injector.gamma.fill_(0.1)   # the others keep gamma = 0 (the initialisation)
    outs = m(torch.randn(2, 3, 64, 64))
    # not a plain sum: in training mode each output ends in a BatchNorm, whose outputs sum to a constant
    # (N * beta) whatever the input, so a plain sum has zero gradient upstream of the norms
    gen = torch.Generator().manual_seed(0)
    loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs)
    loss.backward()
    named = dict(m.named_parameters())
    for name in ("patch_embed.proj.weight", "pos_embed", "blocks.1.attn.qkv.weight", "blocks.3.mlp.fc2.weight",
                 "spm.stem.0.0.weight", "spm.conv4.0.weight", "spm.fc1.weight", "level_embed", "up.weight",
                 "interactions.0.injector.attn.value_proj.weight",
                 "interactions.0.injector.attn.sampling_offsets.weight",
                 "interactions.0.injector.attn.attention_weights.weight",
                 "interactions.1.injector.gamma",              # gamma = 0 still gets a gradient
                 "interactions.2.extractor.attn.value_proj.weight", "interactions.2.extractor.ffn.dwconv.weight",
                 "interactions.3.extra_extractors.1.ffn.fc2.weight", "norms.0.weight"):
        g = named[name].grad
        assert g is not None, name
        assert torch.isfinite(g).all(), name
        assert g.abs().sum() > 0, name


def test_injector_at_zero_gamma_leaves_the_vit_untouched():
    # gamma = 0 at initialisation: the ViT tokens are exactly the plain ViT's (pretrained features preserved)
    torch.manual_seed(6)
    m = vit_adapter_base(**SMALL).eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():   # the plain ViT on the patch tokens (96 x 64 -> a 6 x 4 grid)
        t = m.patch_embed(x).flatten(2).transpose(1, 2) + m._pos_embed(6, 4)
        for blk in m.blocks:
            t = blk(t)
    seen = []
    m.blocks[-1].register_forward_hook(lambda mod, inp, out: seen.append(out))
    with torch.no_grad():
        m(x)
    torch.testing.assert_close(seen[0], t)
    with torch.no_grad():   # and a non-zero gamma does change them
        m.interactions[1].injector.gamma.fill_(0.5)
        m(x)
    assert not torch.allclose(seen[1], t)


# --- 5. DeiT weights ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deit_file(tmp_path_factory):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(7)
    sd = {k: v.contiguous() for k, v in timm.create_model("deit_base_patch16_224", pretrained=False).state_dict().items()}
    path = tmp_path_factory.mktemp("deit") / "deit_b.safetensors"
    save_file(sd, str(path))
    return path, sd


def test_load_deit_weights(deit_file):
    path, sd = deit_file
    m = vit_adapter_base(pretrained=str(path))
    own = dict(m.named_parameters())
    for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.attn.qkv.weight",
              "blocks.7.attn.qkv.bias", "blocks.11.mlp.fc2.weight", "blocks.11.norm2.bias"):
        torch.testing.assert_close(own[k].detach(), sd[k], rtol=0, atol=0)
    # same 14x14 grid: the pos_embed is the file's, without the class-token slot
    torch.testing.assert_close(own["pos_embed"].detach(), sd["pos_embed"][:, 1:], rtol=0, atol=0)
    r = m.load_report
    assert r["missing"] == [] and r["unexpected"] == [] and not r["pos_embed_resized"]
    assert {"head.weight", "cls_token", "norm.weight"} <= set(r["ignored"])
    assert len(r["loaded"]) == 2 + 1 + 12 * 12   # patch_embed (2) + pos_embed + 12 tensors per block


def test_pos_embed_is_resized_from_another_grid():
    torch.manual_seed(8)
    m = vit_adapter_base(**SMALL)
    pe = torch.randn(1, 1 + 8 * 8, 96)            # class token + an 8x8 grid
    with pytest.warns(UserWarning, match="missing"):
        r = load_deit_state(m, {"pos_embed": pe}, "a small file", strict=False)
    assert r["pos_embed_resized"]
    want = F.interpolate(pe[:, 1:].reshape(1, 8, 8, 96).permute(0, 3, 1, 2), size=(14, 14), mode="bicubic",
                         align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(m.pos_embed.detach(), want)
    with pytest.raises(ValueError, match="a small file misses"):
        load_deit_state(m, {"pos_embed": pe}, "a small file")     # strict: the blocks are absent


def test_bad_weights_file_names_the_file(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "not_deit_b.safetensors"
    save_file({"patch_embed.proj.weight": torch.zeros(10, 3, 16, 16)}, str(bad))
    with pytest.raises(ValueError, match="not_deit_b.safetensors"):
        vit_adapter_base(pretrained=str(bad), **SMALL)


def test_hub_failure_says_what_to_do(monkeypatch):
    import timm

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="pretrained=<path"):
        vit_adapter_base(pretrained="hub", **SMALL)


# --- 6. layer ids for layer-wise lr decay -----------------------------------------------------------------------

def test_layer_ids(full):
    from prolab.train.optim import _layer_id

    wrapper = nn.Module()
    wrapper.backbone = full
    names = [n for n, _ in wrapper.named_parameters()]
    ids = {}
    for n in names:
        m = re.search(LAYER_RE, n)
        if n.startswith("backbone.blocks."):
            assert m is not None, n
            ids.setdefault(int(m.group(1)), []).append(n)
        else:
            assert m is None, f"adapter parameter {n} would be taken for a ViT layer"
    assert sorted(ids) == list(range(12))
    assert {_layer_id(n, 12) for n in names if n.startswith("backbone.blocks.")} == set(range(1, 13))
    # the release's rule: ViT layers decayed, adapter modules at the head's id
    assert release_layer_id("backbone.blocks.4.attn.qkv.weight") == 5
    assert release_layer_id("backbone.pos_embed") == 0 == release_layer_id("backbone.patch_embed.proj.weight")
    assert {release_layer_id(n) for n in names if not n.startswith(("backbone.blocks.", "backbone.p"))} == {13}


def test_defaults_are_the_release_settings():
    d = ViTAdapterDefaults()
    assert (d.patch_size, d.embed_dim, d.depth, d.num_heads, d.mlp_ratio, d.drop_path_rate) == (16, 768, 12, 12, 4, 0.3)
    assert (d.conv_inplane, d.n_points, d.deform_num_heads, d.cffn_ratio, d.deform_ratio) == (64, 4, 12, 0.25, 0.5)
    assert [list(r) for r in d.interaction_indexes] == [[0, 2], [3, 5], [6, 8], [9, 11]]
    with pytest.raises(ValueError, match="interaction_indexes"):
        vit_adapter_base(**{**SMALL, "interaction_indexes": ((0, 1), (3, 3))})
