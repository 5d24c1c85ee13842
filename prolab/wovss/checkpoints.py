"""Released GroupViT and PGSeg weights into the kit's network (transformers' ``GroupViTModel``).

Three layouts are read, each from a file loaded without running pickle code (``weights_only=True``, or
safetensors):

- ``nvlabs``: the checkpoints of NVlabs/GroupViT (``group_vit_gcc_yfcc_30e``, ``group_vit_gcc_redcap_30e``) and of
  PGSeg, which forks it: a dict whose ``model`` entry holds keys such as ``img_encoder.layers.0.blocks.1.attn.qkv
  .weight`` or ``text_encoder.transformer.resblocks.3.attn.in_proj_weight``. The fused query/key/value matrices are
  split in three; the projector MLPs and the stage names are renamed. Keys the GroupViT network does not have
  (PGSeg's NPR modules, GroupViT's ``multi_label_logit_scale``) are returned apart, not dropped silently.
- ``hub``: a transformers ``GroupViTModel`` state dict (``model.safetensors`` / ``pytorch_model.bin`` of a hub
  folder such as ``nvidia/groupvit-gcc-yfcc``): already in the kit's names.
- ``auto``: whichever of the two the keys say.

The renaming table below is written from the two codebases' module names (GroupViT's ``img_encoder`` /
``text_encoder`` / ``img_projector``; transformers' ``vision_model`` / ``text_model`` / ``visual_projection``);
the tests build a random state dict in each layout and check the conversion loads into the network with every
tensor in place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

# (pattern, replacement), applied in order to every key that is not a fused qkv / in_proj matrix
_RULES: tuple[tuple[str, str], ...] = (
    (r"^img_encoder\.pos_embed$", "vision_model.embeddings.position_embeddings"),
    (r"^img_encoder\.patch_embed\.proj\.", "vision_model.embeddings.patch_embeddings.projection."),
    (r"^img_encoder\.patch_embed\.norm\.", "vision_model.embeddings.layernorm."),
    (r"^img_encoder\.norm\.", "vision_model.layernorm."),
    (r"^img_encoder\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.", r"vision_model.encoder.stages.\1.layers.\2.self_attn.out_proj."),
    (r"^img_encoder\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.", r"vision_model.encoder.stages.\1.layers.\2.layer_norm1."),
    (r"^img_encoder\.layers\.(\d+)\.blocks\.(\d+)\.norm2\.", r"vision_model.encoder.stages.\1.layers.\2.layer_norm2."),
    (r"^img_encoder\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.", r"vision_model.encoder.stages.\1.layers.\2.mlp."),
    (r"^img_encoder\.layers\.(\d+)\.downsample\.(.*)\.attn\.proj\.", r"vision_model.encoder.stages.\1.downsample.\2.attn.out_proj."),
    (r"^img_encoder\.layers\.(\d+)\.", r"vision_model.encoder.stages.\1."),
    (r"^text_encoder\.token_embedding\.", "text_model.embeddings.token_embedding."),
    (r"^text_encoder\.positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^text_encoder\.transformer\.resblocks\.(\d+)\.ln_1\.", r"text_model.encoder.layers.\1.layer_norm1."),
    (r"^text_encoder\.transformer\.resblocks\.(\d+)\.ln_2\.", r"text_model.encoder.layers.\1.layer_norm2."),
    (r"^text_encoder\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"text_model.encoder.layers.\1.mlp.fc1."),
    (r"^text_encoder\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"text_model.encoder.layers.\1.mlp.fc2."),
    (r"^text_encoder\.transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"text_model.encoder.layers.\1.self_attn.out_proj."),
    (r"^text_encoder\.ln_final\.", "text_model.final_layer_norm."),
    (r"^img_projector\.linear_hidden\.", "visual_projection."),
    (r"^img_projector\.linear_out\.", "visual_projection.3."),
    (r"^text_projector\.linear_hidden\.", "text_projection."),
    (r"^text_projector\.linear_out\.", "text_projection.3."),
)
_QKV = re.compile(r"^img_encoder\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")
_IN_PROJ = re.compile(r"^text_encoder\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")
_UNUSED = ("text_model.embeddings.position_ids",)      # a buffer transformers rebuilds; never in a checkpoint


@dataclass
class Converted:
    """A state dict in the kit's names, and what the source held beyond the GroupViT network."""
    state_dict: dict[str, torch.Tensor]
    layout: str
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: safetensors, or a torch file read with ``weights_only=True`` (a
    GroupViT/PGSeg training checkpoint keeps them under ``model``, a Lightning-style one under ``state_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # an unsafe pickle or a corrupt file: say which file, refuse it
        raise ValueError(f"checkpoint {path}: not readable as tensors with weights_only=True ({e})") from e
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"checkpoint {path}: expected a dict of tensors (or one under 'model' / 'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items()}   # saved from DistributedDataParallel


def detect_layout(state: dict) -> str:
    if any(k.startswith(("img_encoder.", "text_encoder.")) for k in state):
        return "nvlabs"
    if any(k.startswith(("vision_model.", "text_model.")) for k in state):
        return "hub"
    raise ValueError("checkpoint: neither GroupViT's layout (img_encoder.*, text_encoder.*) nor transformers' "
                     f"(vision_model.*, text_model.*); first keys: {sorted(state)[:5]}")


def _split3(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if t.shape[0] % 3:
        raise ValueError(f"a fused query/key/value tensor of shape {tuple(t.shape)}: first dim not divisible by 3")
    return t.chunk(3, dim=0)


def convert(state: dict[str, torch.Tensor], layout: str = "auto", model=None) -> Converted:
    """Rename ``state`` into transformers' GroupViT names. With ``model`` given, the keys it does not have go to
    ``extra`` (PGSeg's NPR modules, ``multi_label_logit_scale``) and the shapes are checked against it."""
    layout = detect_layout(state) if layout == "auto" else layout
    if layout not in ("nvlabs", "hub"):
        raise ValueError(f"layout = {layout!r}: one of auto, nvlabs, hub")
    out: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}                    # new name -> the file's name, to report extras as written
    if layout == "hub":
        out = {k: v for k, v in state.items() if k not in _UNUSED}
    else:
        for key, value in state.items():
            if m := _QKV.match(key):
                stage, layer, kind = m.groups()
                for name, part in zip(("q_proj", "k_proj", "v_proj"), _split3(value)):
                    out[f"vision_model.encoder.stages.{stage}.layers.{layer}.self_attn.{name}.{kind}"] = part
                continue
            if m := _IN_PROJ.match(key):
                layer, kind = m.groups()
                for name, part in zip(("q_proj", "k_proj", "v_proj"), _split3(value)):
                    out[f"text_model.encoder.layers.{layer}.self_attn.{name}.{kind}"] = part
                continue
            new = key
            for pattern, repl in _RULES:
                new, n = re.subn(pattern, repl, new)
                if n:
                    break
            if new.startswith(("visual_projection.", "text_projection.")):
                value = value.squeeze()            # GroupViT's projectors are 1x1 convolutions
            out[new], source[new] = value, key
    result = Converted(out, layout)
    if model is not None:
        target = model.state_dict()
        result.extra = {source.get(k, k): v for k, v in out.items() if k not in target}
        result.state_dict = {k: v for k, v in out.items() if k in target}
        bad = [f"{k}: {tuple(v.shape)} vs the network's {tuple(target[k].shape)}"
               for k, v in result.state_dict.items() if v.shape != target[k].shape]
        if bad:
            raise ValueError("checkpoint does not fit the network (wrong preset?): " + "; ".join(bad[:5]))
    return result


def load_groupvit(path: str | Path, preset: str = "paper", layout: str = "auto", strict: bool = True):
    """A ``GroupViTModel`` of ``preset`` with the weights of a released checkpoint; returns (model, Converted).
    ``strict``: every parameter of the network must come from the file (else the missing names are listed)."""
    from .model import build_groupvit

    model = build_groupvit(preset)
    conv = convert(read_state_dict(path), layout, model)
    missing = [k for k in model.state_dict() if k not in conv.state_dict and k not in _UNUSED]
    if strict and missing:
        raise ValueError(f"checkpoint {path}: {len(missing)} of the network's tensors are not in it, e.g. {missing[:5]}")
    model.load_state_dict(conv.state_dict, strict=False)
    return model.eval(), conv


__all__ = ["Converted", "read_state_dict", "detect_layout", "convert", "load_groupvit"]
