"""ViT-Adapter (Chen et al., "Vision Transformer Adapter for Dense Predictions", arXiv 2205.08534) in plain PyTorch.

Our own implementation written from the paper's description (no compiled ops, CPU and CUDA, any float dtype).
It is one self-contained model file (as timm's are), so it is longer than the kit's other modules: the
deformable attention, the adapter's three blocks and the backbone read top to bottom in one place.


- a plain ViT body (timm ``Block``s; DeiT-B/16 parameter names, so timm's ``deit_base_patch16_224`` state dict
  loads into it) run on the image's patch tokens, without a class token;
- a **spatial prior module** (a ResNet-like conv stem, then stride-2 convs) giving a stride-4 map ``c1`` and
  stride-8/16/32 maps projected to ``embed_dim``, the latter flattened into one "spatial" token sequence;
- N **interactions**, each: an *injector* (ViT tokens query the spatial tokens through multi-scale deformable
  cross-attention, added with a learnable per-channel gamma that starts at 0 so the pretrained ViT is untouched
  at initialisation), the ViT blocks of that interaction, an *extractor* (spatial tokens query the ViT tokens,
  + a ConvFFN with a depthwise conv); the last interaction has extra extractors;
- outputs: the spatial tokens reshaped back to strides 8/16/32, the stride-4 map = ``c1`` + 2x transposed-conv
  upsampling of the stride-8 map, the ViT features of each interaction resized and added (``add_vit_feature``),
  each map followed by a BatchNorm (SyncBN in the release; ``train.py`` converts BN to SyncBN under DDP).

Multi-scale deformable attention follows Deformable DETR (Zhu et al., arXiv 2010.04159): per head, level and
point, a linear layer predicts a sampling offset (in pixels of that level) around the query's reference point
and another predicts an attention weight (softmax over levels x points); values are sampled with
``grid_sample`` (bilinear, zero padding, ``align_corners=False``, so normalised location (x+0.5)/W is the
centre of pixel x).

Input sizes: any. The image is zero-padded at the bottom/right to a multiple of 32 (so every stride divides
it and the ViT grid, the spatial maps and the outputs line up exactly); the outputs are then cropped to
ceil(H/s) x ceil(W/s), i.e. the padding is invisible for sizes that are already multiples of 32 (512 crops).

Position embeddings are kept on the 14x14 pretraining grid (without the class-token slot) and resized
(bicubic) to the input's token grid at every forward.

Layer-wise lr decay: the ViT blocks are ``blocks.<i>`` (ids 0..11 for ``train._layer_id``); adapter modules are
named ``spm``, ``level_embed``, ``interactions.<i>``, ``up``, ``norms.<i>`` and do not match
``(?:blocks|stages|layers?)[._](\\d+)``. NOTE: ``train._layer_id`` gives such non-matching ``backbone.`` names id
0 (the most decayed, like the patch embedding), while the release gives adapter modules the head's id (no
decay); :func:`release_layer_id` implements the release's rule for a caller that wants it.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, PatchEmbed

from .layers import FeatureInfo, conv_bn_relu

log = logging.getLogger(__name__)

# Parameter counts of ViT-Adapter-B (DeiT-B init) as the authors' release reports them (model zoo READMEs of
# github.com/czczup/ViT-Adapter, read through the search index): 134M for UperNet + ViT-Adapter-B on ADE20K
# (segmentation/README.md, 512 crop, 160k) and 120M for Mask R-CNN + ViT-Adapter-B on COCO
# (detection/README.md). The paper's own tables were not read here (unverified that they print the same
# numbers, though the README tables are the paper's model zoo). The backbone alone is not reported; with
# mmseg's UperNet head (512 channels) + FCN auxiliary head (256) for 150 classes (~34M) it is ~100M.
PAPER_PARAMS_M = 134.0            # UperNet + ViT-Adapter-B, whole segmentor, ADE20K (release model zoo)
PAPER_PARAMS_MASK_RCNN_M = 120.0  # Mask R-CNN + ViT-Adapter-B, COCO (release model zoo)

_LAYER_RE = r"(?:blocks|stages|layers?)[._](\d+)"


@dataclass(frozen=True)
class ViTAdapterDefaults:
    """ViT-Adapter-B as configured in the ProLab release (reference/method.md section 4b)."""
    img_size: int = 512                 # the training crop (documentation: any input size works)
    pretrain_size: int = 224            # DeiT-B's pretraining resolution: pos_embed lives on its 14x14 grid
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.3
    conv_inplane: int = 64              # spatial prior module width
    n_points: int = 4                   # sampling points per head and level
    deform_num_heads: int = 12
    deform_ratio: float = 0.5           # value width of the deformable attention = embed_dim * deform_ratio
    with_cffn: bool = True
    cffn_ratio: float = 0.25            # ConvFFN hidden width = embed_dim * cffn_ratio
    init_values: float = 0.0            # the injector's gamma at initialisation
    add_vit_feature: bool = True
    interaction_indexes: tuple = ((0, 2), (3, 5), (6, 8), (9, 11))
    n_extra_extractors: int = 2         # extra extractors in the last interaction (the base setting)
    # Drop path on the extractor's ConvFFN branch. Not stated in the paper; set to drop_path_rate (our reading
    # of the release's configs, unverified here). None = use drop_path_rate.
    adapter_drop_path: float | None = None


# --- multi-scale deformable attention -----------------------------------------------------------------------

def deformable_sample(value: torch.Tensor, shapes: list[tuple[int, int]], locations: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
    """The core of multi-scale deformable attention.

    value: (B, S, M, Dh), the levels' maps flattened row-major and concatenated (S = sum of H_l * W_l);
    locations: (B, Q, M, L, P, 2), normalised (x, y) in [0, 1] (pixel x's centre is (x + 0.5) / W_l);
    weights: (B, Q, M, L, P). Returns (B, Q, M * Dh) = sum over levels and points of weight * bilinear sample
    (zero outside the map)."""
    B, S, M, Dh = value.shape
    Q, L, P = locations.shape[1], locations.shape[3], locations.shape[4]
    if sum(h * w for h, w in shapes) != S or len(shapes) != L:
        raise ValueError(f"value has {S} positions over {len(shapes)} levels {shapes}; locations have {L} levels")
    grids = locations.to(value.dtype) * 2 - 1                  # grid_sample wants [-1, 1]
    out = value.new_zeros(B * M, Dh, Q)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        # (B, h*w, M, Dh) -> (B*M, Dh, h, w): each head samples its own channels
        v = value[:, start:start + h * w].permute(0, 2, 3, 1).reshape(B * M, Dh, h, w)
        start += h * w
        g = grids[:, :, :, lvl].transpose(1, 2).reshape(B * M, Q, P, 2)
        s = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B*M, Dh, Q, P)
        a = weights[:, :, :, lvl].transpose(1, 2).reshape(B * M, 1, Q, P).to(s.dtype)
        out = out + (s * a).sum(-1)                            # accumulate per level: no (.., L, P) stack
    return out.view(B, M * Dh, Q).transpose(1, 2)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention: each query attends to n_levels x n_points sampled positions per head.

    Offsets are in pixels of each level (divided by the level's W, H before being added to the normalised
    reference point), so one offset means the same neighbourhood size in every level's own pixels."""

    def __init__(self, dim: int, n_levels: int, n_heads: int, n_points: int, value_ratio: float = 1.0):
        super().__init__()
        vdim = int(dim * value_ratio)
        if vdim % n_heads:
            raise ValueError(f"value width {vdim} (dim {dim} x ratio {value_ratio}) is not divisible by {n_heads} heads")
        self.n_levels, self.n_heads, self.n_points, self.head_dim = n_levels, n_heads, n_points, vdim // n_heads
        self.sampling_offsets = nn.Linear(dim, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(dim, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(dim, vdim)   # deform_ratio < 1 narrows the sampled values (cheaper)
        self.output_proj = nn.Linear(vdim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        # Start from a fixed pattern: head m looks along direction 2*pi*m/M, point k at distance k+1 (pixels of
        # each level), every level alike, uniform attention. The query-dependent part starts at zero.
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.n_heads, dtype=torch.float32) * (2 * math.pi / self.n_heads)
        d = torch.stack([theta.cos(), theta.sin()], -1)
        d = d / d.abs().max(-1, keepdim=True).values           # onto the unit square's border
        d = d.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        d = d * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        self.sampling_offsets.bias.copy_(d.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, feat: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query (B, Q, C); reference (B or 1, Q, L, 2) normalised (x, y); feat (B, S, C) over ``shapes``."""
        B, Q, _ = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        if len(shapes) != L:
            raise ValueError(f"this attention has {L} levels, got {len(shapes)} shapes")
        value = self.value_proj(feat).view(B, feat.shape[1], M, self.head_dim)
        offsets = self.sampling_offsets(query).view(B, Q, M, L, P, 2)
        weights = self.attention_weights(query).view(B, Q, M, L * P).softmax(-1).view(B, Q, M, L, P)
        norm = torch.tensor([[w, h] for h, w in shapes], dtype=offsets.dtype, device=offsets.device)  # (L, 2)
        loc = reference[:, :, None, :, None, :].to(offsets.dtype) + offsets / norm[None, None, None, :, None, :]
        return self.output_proj(deformable_sample(value, shapes, loc, weights))


def grid_centres(shapes: list[tuple[int, int]], device=None, dtype=torch.float32) -> torch.Tensor:
    """(sum H*W, 2) normalised (x, y) pixel centres of each level's grid, row-major, levels concatenated."""
    pts = []
    for h, w in shapes:
        y, x = torch.meshgrid((torch.arange(h, device=device, dtype=dtype) + 0.5) / h,
                              (torch.arange(w, device=device, dtype=dtype) + 0.5) / w, indexing="ij")
        pts.append(torch.stack([x.reshape(-1), y.reshape(-1)], -1))
    return torch.cat(pts, 0)


# --- adapter modules -----------------------------------------------------------------------------------------

class SpatialPriorModule(nn.Module):
    """Convolutional stem -> c1 (stride 4) and c2/c3/c4 (strides 8/16/32), each projected to ``dim``.

    The stem is ResNet's deep stem (three 3x3 convs, the first with stride 2, then a stride-2 max pool); the
    pyramid is stride-2 3x3 convs widening the channels (inplane x2, x4, x4); 1x1 convs project to ``dim``."""

    def __init__(self, inplanes: int = 64, dim: int = 768, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(in_chans, inplanes, stride=2, norm=nn.BatchNorm2d), conv_bn_relu(inplanes, inplanes, norm=nn.BatchNorm2d),
                                  conv_bn_relu(inplanes, inplanes, norm=nn.BatchNorm2d), nn.MaxPool2d(3, 2, 1))
        self.conv2 = conv_bn_relu(inplanes, 2 * inplanes, stride=2, norm=nn.BatchNorm2d)
        self.conv3 = conv_bn_relu(2 * inplanes, 4 * inplanes, stride=2, norm=nn.BatchNorm2d)
        self.conv4 = conv_bn_relu(4 * inplanes, 4 * inplanes, stride=2, norm=nn.BatchNorm2d)
        self.fc1 = nn.Conv2d(inplanes, dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, dim, 1)

    def forward(self, x):
        f1 = self.stem(x)
        f2 = self.conv2(f1)
        f3 = self.conv3(f2)
        f4 = self.conv4(f3)
        return self.fc1(f1), self.fc2(f2), self.fc3(f3), self.fc4(f4)


class ConvFFN(nn.Module):
    """FFN on the multi-scale spatial tokens with a 3x3 depthwise conv in between (local context per scale)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)  # shared by the three scales
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
        x = self.fc1(x)
        B, _, C = x.shape
        parts, start = [], 0
        for h, w in shapes:   # tokens -> maps per scale, depthwise conv, back to tokens
            t = x[:, start:start + h * w].transpose(1, 2).reshape(B, C, h, w)
            parts.append(self.dwconv(t).flatten(2).transpose(1, 2))
            start += h * w
        x = self.drop(self.act(torch.cat(parts, 1)))
        return self.drop(self.fc2(x))


class Injector(nn.Module):
    """ViT tokens <- spatial features: x + gamma * DeformAttn(norm(x), norm(c)); gamma starts at init_values (0),
    so at initialisation the pretrained ViT's features pass unchanged."""

    def __init__(self, dim, n_heads, n_points, n_levels, deform_ratio, init_values):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, n_levels, n_heads, n_points, deform_ratio)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x, ref, c, c_shapes):
        return x + self.gamma * self.attn(self.query_norm(x), ref, self.feat_norm(c), c_shapes)


class Extractor(nn.Module):
    """Spatial features <- ViT tokens: c + DeformAttn(norm(c), norm(x)), then c + ConvFFN(norm(c))."""

    def __init__(self, dim, n_heads, n_points, deform_ratio, with_cffn, cffn_ratio, drop_path):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, 1, n_heads, n_points, deform_ratio)   # one level: the ViT's 1/16 grid
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio)) if with_cffn else None
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6) if with_cffn else None
        self.drop_path = DropPath(drop_path)

    def forward(self, c, ref, x, x_shape, c_shapes):
        c = c + self.attn(self.query_norm(c), ref, self.feat_norm(x), [x_shape])
        if self.ffn is not None:
            c = c + self.drop_path(self.ffn(self.ffn_norm(c), c_shapes))
        return c


class Interaction(nn.Module):
    """One interaction around a run of ViT blocks: inject, run the blocks, extract (+ extra extractors)."""

    def __init__(self, d: ViTAdapterDefaults, n_extra: int):
        super().__init__()
        dp = d.drop_path_rate if d.adapter_drop_path is None else d.adapter_drop_path
        self.injector = Injector(d.embed_dim, d.deform_num_heads, d.n_points, 3, d.deform_ratio, d.init_values)
        make = lambda: Extractor(d.embed_dim, d.deform_num_heads, d.n_points, d.deform_ratio, d.with_cffn,  # noqa: E731
                                 d.cffn_ratio, dp)
        self.extractor = make()
        self.extra_extractors = nn.ModuleList(make() for _ in range(n_extra))

    def forward(self, x, c, blocks, ref_x, ref_c, x_shape, c_shapes):
        x = self.injector(x, ref_x, c, c_shapes)
        for blk in blocks:
            x = blk(x)
        c = self.extractor(c, ref_c, x, x_shape, c_shapes)
        for ex in self.extra_extractors:
            c = ex(c, ref_c, x, x_shape, c_shapes)
        return x, c


# --- the backbone --------------------------------------------------------------------------------------------

class ViTAdapter(nn.Module):
    """forward(images (B, 3, H, W)) -> [4 maps of embed_dim channels at strides 4, 8, 16, 32]."""

    def __init__(self, defaults: ViTAdapterDefaults = ViTAdapterDefaults()):
        super().__init__()
        from timm.models.vision_transformer import Block

        d = self.defaults = defaults
        idx = [tuple(int(i) for i in r) for r in d.interaction_indexes]
        flat = [i for s, e in idx for i in range(s, e + 1)]
        if flat != list(range(d.depth)):
            raise ValueError(f"interaction_indexes {d.interaction_indexes} must cover blocks 0..{d.depth - 1} in order")
        if d.pretrain_size % d.patch_size:
            raise ValueError("pretrain_size must be a multiple of patch_size")
        self.interaction_indexes = idx
        D = d.embed_dim
        # ViT body: names as in timm's deit_base_patch16_224 (patch_embed.proj, pos_embed, blocks.N.*)
        # timm's PatchEmbed without a fixed size: a stride-16 conv named patch_embed.proj, as DeiT's
        self.patch_embed = PatchEmbed(None, d.patch_size, d.in_chans, D, flatten=False)
        self.pretrain_grid = d.pretrain_size // d.patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid ** 2, D))  # no class-token slot
        dpr = torch.linspace(0, d.drop_path_rate, d.depth).tolist()               # stochastic depth rule
        self.blocks = nn.ModuleList(
            Block(D, d.num_heads, d.mlp_ratio, qkv_bias=d.qkv_bias, drop_path=dpr[i],
                  norm_layer=partial(nn.LayerNorm, eps=1e-6))
            for i in range(d.depth))
        # adapter
        self.level_embed = nn.Parameter(torch.zeros(3, D))   # tells the three spatial levels apart
        self.spm = SpatialPriorModule(d.conv_inplane, D, d.in_chans)
        self.interactions = nn.ModuleList(
            Interaction(d, d.n_extra_extractors if i == len(idx) - 1 else 0) for i in range(len(idx)))
        self.up = nn.ConvTranspose2d(D, D, 2, 2)              # stride 8 -> 4, added to c1
        self.norms = nn.ModuleList(nn.BatchNorm2d(D) for _ in range(4))
        self.feature_info = FeatureInfo([D] * 4, [4, 8, 16, 32])
        self.load_report: dict | None = None
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.level_embed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m is not self.patch_embed.proj:
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():   # the deformable attention has its own starting pattern
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        g = self.pretrain_grid
        if (h, w) == (g, g):
            return self.pos_embed
        pe = self.pos_embed.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        pe = F.interpolate(pe.float(), size=(h, w), mode="bicubic", align_corners=False).to(self.pos_embed.dtype)
        return pe.flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        B, _, H, W = images.shape
        ph, pw = (-H) % 32, (-W) % 32
        x = F.pad(images, (0, pw, 0, ph)) if ph or pw else images
        Hp, Wp = x.shape[2:]
        D = self.defaults.embed_dim

        c1, c2, c3, c4 = self.spm(x)
        c_shapes = [tuple(t.shape[2:]) for t in (c2, c3, c4)]
        c = torch.cat([(t + self.level_embed[i].view(1, D, 1, 1).to(t.dtype)).flatten(2).transpose(1, 2)
                       for i, t in enumerate((c2, c3, c4))], 1)

        tok = self.patch_embed(x)
        hv, wv = tok.shape[2:]
        tok = tok.flatten(2).transpose(1, 2) + self._pos_embed(hv, wv).to(tok.dtype)

        # reference points: normalised pixel centres (the same point at every level for the ViT queries)
        ref_x = grid_centres([(hv, wv)], x.device)[None, :, None, :].expand(1, -1, 3, 2)
        ref_c = grid_centres(c_shapes, x.device)[None, :, None, :]

        vit_maps = []
        for inter, (s, e) in zip(self.interactions, self.interaction_indexes):
            tok, c = inter(tok, c, self.blocks[s:e + 1], ref_x, ref_c, (hv, wv), c_shapes)
            vit_maps.append(tok.transpose(1, 2).reshape(B, D, hv, wv))

        n2, n3 = c_shapes[0][0] * c_shapes[0][1], c_shapes[1][0] * c_shapes[1][1]
        maps = [c[:, :n2], c[:, n2:n2 + n3], c[:, n2 + n3:]]
        c2, c3, c4 = [m.transpose(1, 2).reshape(B, D, h, w) for m, (h, w) in zip(maps, c_shapes)]
        c1 = c1 + self.up(c2)
        outs = [c1, c2, c3, c4]
        if self.defaults.add_vit_feature:   # the ViT's own features, resized to each stride, added
            outs = [o + (v if v.shape[2:] == o.shape[2:] else
                         F.interpolate(v, size=o.shape[2:], mode="bilinear", align_corners=False))
                    for o, v in zip(outs, vit_maps)]
        outs = [n(o) for n, o in zip(self.norms, outs)]
        if ph or pw:   # drop the padding: keep ceil(H/s) x ceil(W/s)
            outs = [o[:, :, :-(-H // s), :-(-W // s)] for o, s in zip(outs, (4, 8, 16, 32))]
        return outs

    def vit_parameters(self):
        """The DeiT-initialised part: patch_embed, pos_embed, blocks."""
        for n, p in self.named_parameters():
            if n.startswith(("patch_embed.", "pos_embed", "blocks.")):
                yield n, p


# --- weights -------------------------------------------------------------------------------------------------

_IGNORED_PREFIXES = ("head.", "head_dist.", "fc_norm.", "norm.", "cls_token", "dist_token", "reg_token")


def resize_pos_embed(pe: torch.Tensor, grid: int) -> tuple[torch.Tensor, bool]:
    """A (1, [prefix +] g*g, C) DeiT pos_embed -> (1, grid*grid, C) without prefix tokens, bicubic if g != grid."""
    n = pe.shape[1]
    for prefix in (0, 1, 2):   # none, class token, class + distillation tokens
        g = math.isqrt(n - prefix)
        if g * g == n - prefix:
            break
    else:
        raise ValueError(f"pos_embed with {n} tokens is not a square grid plus 0-2 prefix tokens")
    pe = pe[:, prefix:]
    if g == grid:
        return pe, False
    m = pe.reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    m = F.interpolate(m, size=(grid, grid), mode="bicubic", align_corners=False)
    return m.flatten(2).transpose(1, 2).to(pe.dtype), True


def load_deit_state(model: ViTAdapter, state: dict[str, torch.Tensor], source: str = "<state dict>",
                    strict: bool = True) -> dict:
    """Load a DeiT/timm-ViT state dict into the ViT body of ``model``; returns (and stores as
    ``model.load_report``) {"loaded", "missing", "unexpected", "ignored", "pos_embed_resized"}.

    Classifier keys (head, fc_norm, the final norm, class/distillation tokens) are ignored: the adapter uses
    neither. A shape mismatch, or (strict) a ViT body tensor absent from the file, raises ValueError naming
    ``source``."""
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    own = {n: p for n, p in model.vit_parameters()}
    usable, ignored, unexpected, resized = {}, [], [], False
    for k, v in state.items():
        if k.startswith(_IGNORED_PREFIXES):
            ignored.append(k)
        elif k == "pos_embed":
            try:
                v, resized = resize_pos_embed(v, model.pretrain_grid)
            except ValueError as e:
                raise ValueError(f"{source}: {e}") from None
            usable[k] = v
        elif k in own:
            usable[k] = v
        else:
            unexpected.append(k)
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in usable.items()
           if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{source} does not fit ViT-Adapter's ViT body ({len(bad)} shape mismatches, e.g. "
                         f"{bad[:3]}); it should be a DeiT-B/16 (deit_base_patch16_224) state dict")
    missing = [k for k in own if k not in usable]
    if missing and strict:
        raise ValueError(f"{source} misses {len(missing)} of {len(own)} ViT body tensors, e.g. {missing[:3]}; "
                         "it should be a DeiT-B/16 (deit_base_patch16_224) state dict")
    with torch.no_grad():
        for k, v in usable.items():
            own[k].copy_(v.to(own[k].dtype))
    report = {"source": str(source), "loaded": sorted(usable), "missing": missing, "unexpected": sorted(unexpected),
              "ignored": sorted(ignored), "pos_embed_resized": resized}
    if missing or unexpected:
        warnings.warn(f"loading {source}: {len(missing)} missing ViT tensors {missing[:3]}, "
                      f"{len(unexpected)} unexpected keys {unexpected[:3]}", stacklevel=2)
    log.info("loaded %d ViT tensors from %s (ignored %d classifier keys, pos_embed resized: %s)",
             len(usable), source, len(ignored), resized)
    model.load_report = report
    return report


def vit_adapter_base(pretrained: str | Path | None = None, **overrides) -> ViTAdapter:
    """ViT-Adapter-B. ``pretrained``: None/"none" = random init; "hub" = timm's ``deit_base_patch16_224`` weights
    (needs network access); otherwise a DeiT-B state-dict file (.safetensors or a torch file, read with
    ``weights_only=True``). ``overrides`` replace fields of :class:`ViTAdapterDefaults`."""
    model = ViTAdapter(replace(ViTAdapterDefaults(), **overrides))
    if pretrained in (None, "none", "", False):
        return model
    if pretrained in ("hub", True):
        import timm

        try:
            sd = timm.create_model("deit_base_patch16_224", pretrained=True).state_dict()
        except Exception as e:
            raise RuntimeError(
                f"could not fetch deit_base_patch16_224 weights from the hub ({type(e).__name__}: {e}); offline, "
                "pass pretrained=<path to a DeiT-B/16 state dict (.safetensors or .pth)>, e.g. the release's "
                "deit_base_patch16_224-b5f2ef4d.pth, or pretrained=None for random init") from None
        load_deit_state(model, sd, "timm hub deit_base_patch16_224")
        return model
    from .weights import load_state_file

    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"DeiT-B weights file {path} does not exist")
    try:
        sd = load_state_file(path)
    except Exception as e:
        raise ValueError(f"cannot read DeiT-B weights from {path}: {type(e).__name__}: {e}") from None
    load_deit_state(model, sd, str(path))
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def release_layer_id(name: str, n_layers: int = 12) -> int:
    """Layer id for layer-wise lr decay as the release assigns it to a ``backbone.``-wrapped ViT-Adapter:
    pos_embed / patch_embed / cls_token 0, ``blocks.i`` i + 1, everything else (adapter, heads) n_layers + 1."""
    import re

    if not name.startswith("backbone."):
        return n_layers + 1
    rest = name[len("backbone."):]
    if rest.startswith(("pos_embed", "patch_embed", "cls_token")):
        return 0
    m = re.match(r"blocks\.(\d+)\.", rest)
    return int(m.group(1)) + 1 if m else n_layers + 1
