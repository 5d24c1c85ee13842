"""The key mapping between the authors' released checkpoints (mmseg 0.x, ViT-Adapter-B + UPerHead + FCNHead) and
prolab's ``SegModel``, both ways: the renaming table, every key of a release checkpoint, and the conversion of a
state dict with its report. Where the key names come from: ``interop.release.checkpoint``'s docstring."""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

# --- the renaming table --------------------------------------------------------------------------------------

# Placeholders of the table: each stands for one part of a key, the same on both sides.
PLACEHOLDERS: dict[str, str] = {
    "i": r"\d+",                                                      # a module index
    "p": r"weight|bias|running_mean|running_var|num_batches_tracked",  # a parameter or BN buffer
    "vit": r"norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2",      # inside a timm/DeiT block
    "conv": r"conv2|conv3|conv4",                                     # the spatial prior module's pyramid
    "j": r"0|1",                                                      # conv (0) or BN (1) of such a block
    "fc": r"fc1|fc2|fc3|fc4",                                         # its 1x1 projections to embed_dim
    "unit": r"injector|extractor|extra_extractors\.\d+",              # the parts of one interaction
    "adp": (r"query_norm|feat_norm|ffn_norm|attn\.sampling_offsets|attn\.attention_weights|attn\.value_proj"
            r"|attn\.output_proj|ffn\.fc1|ffn\.fc2"),
}

# (release key, our key). Every key of either layout matches exactly one row (tests check it).
RELEASE_TO_OURS: tuple[tuple[str, str], ...] = (
    # ViT body: DeiT/timm names on both sides
    ("backbone.pos_embed", "backbone.pos_embed"),            # reshaped: (1, 1+196, D) <-> (1, 196, D)
    ("backbone.patch_embed.proj.{p}", "backbone.patch_embed.proj.{p}"),
    ("backbone.blocks.{i}.{vit}.{p}", "backbone.blocks.{i}.{vit}.{p}"),
    # spatial prior module: the release's stem is one flat Sequential (conv, BN, ReLU) x 3 + max pool,
    # ours three conv-BN-ReLU Sequentials + max pool
    ("backbone.spm.stem.0.{p}", "backbone.spm.stem.0.0.{p}"),
    ("backbone.spm.stem.1.{p}", "backbone.spm.stem.0.1.{p}"),
    ("backbone.spm.stem.3.{p}", "backbone.spm.stem.1.0.{p}"),
    ("backbone.spm.stem.4.{p}", "backbone.spm.stem.1.1.{p}"),
    ("backbone.spm.stem.6.{p}", "backbone.spm.stem.2.0.{p}"),
    ("backbone.spm.stem.7.{p}", "backbone.spm.stem.2.1.{p}"),
    ("backbone.spm.{conv}.{j}.{p}", "backbone.spm.{conv}.{j}.{p}"),
    ("backbone.spm.{fc}.{p}", "backbone.spm.{fc}.{p}"),
    ("backbone.level_embed", "backbone.level_embed"),
    # interactions: the release wraps the ConvFFN's depthwise conv in a module of its own (DWConv.dwconv)
    ("backbone.interactions.{i}.{unit}.ffn.dwconv.dwconv.{p}", "backbone.interactions.{i}.{unit}.ffn.dwconv.{p}"),
    ("backbone.interactions.{i}.{unit}.{adp}.{p}", "backbone.interactions.{i}.{unit}.{adp}.{p}"),
    ("backbone.interactions.{i}.injector.gamma", "backbone.interactions.{i}.injector.gamma"),
    ("backbone.up.{p}", "backbone.up.{p}"),
    # the output BatchNorms: norm1..norm4 there, norms.0..3 here
    ("backbone.norm1.{p}", "backbone.norms.0.{p}"),
    ("backbone.norm2.{p}", "backbone.norms.1.{p}"),
    ("backbone.norm3.{p}", "backbone.norms.2.{p}"),
    ("backbone.norm4.{p}", "backbone.norms.3.{p}"),
    # UPerNet (mmseg ConvModule: .conv + .bn; ours: Sequential(conv, bn, relu) -> .0 + .1)
    ("decode_head.psp_modules.{i}.1.conv.weight", "decode.ppm.{i}.1.0.weight"),
    ("decode_head.psp_modules.{i}.1.bn.{p}", "decode.ppm.{i}.1.1.{p}"),
    ("decode_head.bottleneck.conv.weight", "decode.bottleneck.0.weight"),
    ("decode_head.bottleneck.bn.{p}", "decode.bottleneck.1.{p}"),
    ("decode_head.lateral_convs.{i}.conv.weight", "decode.lateral.{i}.0.weight"),
    ("decode_head.lateral_convs.{i}.bn.{p}", "decode.lateral.{i}.1.{p}"),
    ("decode_head.fpn_convs.{i}.conv.weight", "decode.fpn.{i}.0.weight"),
    ("decode_head.fpn_convs.{i}.bn.{p}", "decode.fpn.{i}.1.{p}"),
    ("decode_head.fpn_bottleneck.conv.weight", "decode.fuse.0.weight"),
    ("decode_head.fpn_bottleneck.bn.{p}", "decode.fuse.1.{p}"),
    ("decode_head.conv_seg.{p}", "classifier.{p}"),            # the property head: 1x1 conv to d channels
    # auxiliary FCN head (num_convs=1, no concat_input)
    ("auxiliary_head.convs.0.conv.weight", "aux.block.0.weight"),
    ("auxiliary_head.convs.0.bn.{p}", "aux.block.1.{p}"),
    ("auxiliary_head.conv_seg.{p}", "aux_classifier.{p}"),
)

# release keys without a counterpart in our model (dropped, and said so); none of them is in the ProLab
# release's checkpoints as the sources build them, but a DeiT state dict saved into the backbone would have them
RELEASE_ONLY: dict[str, str] = {
    r"backbone\.cls_token": "class token: ViT-Adapter runs the ViT on patch tokens only",
    r"backbone\.dist_token": "DeiT distillation token: unused by ViT-Adapter",
    r"backbone\.(?:norm|fc_norm|head|head_dist)\.(?:weight|bias)": "DeiT classifier: unused by ViT-Adapter",
}
# our keys without a counterpart in the release (left out by ours_to_release, filled by release_to_run)
OURS_ONLY: dict[str, str] = {
    r"bank": "property bank: the release reads it from the embedding-bank file, not the checkpoint",
    r"signatures": "class signatures: the release reads them from the embedding-bank file",
    r"warmup_classifier\.(?:weight|bias)": "our one-hot warm-up classifier: the release has no warm-up",
}

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_POS_EMBED = "backbone.pos_embed"


def _compile(template: str) -> re.Pattern:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{PLACEHOLDERS[m.group(1)]})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


RULES = [(_compile(r), r, _compile(o), o) for r, o in RELEASE_TO_OURS]


def _rename(key: str, to_ours: bool) -> str | None:
    for rel_re, rel_t, our_re, our_t in RULES:
        m = (rel_re if to_ours else our_re).fullmatch(key)
        if m:
            return (our_t if to_ours else rel_t).format(**m.groupdict())
    return None


def release_to_ours_key(key: str) -> str | None:
    """Our name of a release key (None: no rule covers it)."""
    return _rename(key, True)


def ours_to_release_key(key: str) -> str | None:
    """The release's name of one of our keys (None: no rule covers it)."""
    return _rename(key, False)


def release_key_names(depth: int = 12, n_interactions: int = 4, n_extra_extractors: int = 2,
                      n_pool_scales: int = 4, n_levels: int = 4, aux: bool = True) -> list[str]:
    """Every state-dict key of the release's ViT-Adapter-B + UperNet (+ FCN auxiliary head) segmentor, written
    out from the sources independently of :data:`RELEASE_TO_OURS` (so the two check each other)."""
    keys = ["backbone.pos_embed", "backbone.level_embed", "backbone.patch_embed.proj.weight",
            "backbone.patch_embed.proj.bias"]
    for b in range(depth):
        for mod in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys += [f"backbone.blocks.{b}.{mod}.weight", f"backbone.blocks.{b}.{mod}.bias"]
    for conv, bn in ((0, 1), (3, 4), (6, 7)):
        keys.append(f"backbone.spm.stem.{conv}.weight")
        keys += [f"backbone.spm.stem.{bn}.{p}" for p in _BN]
    for c in ("conv2", "conv3", "conv4"):
        keys.append(f"backbone.spm.{c}.0.weight")
        keys += [f"backbone.spm.{c}.1.{p}" for p in _BN]
    for f in ("fc1", "fc2", "fc3", "fc4"):
        keys += [f"backbone.spm.{f}.weight", f"backbone.spm.{f}.bias"]
    attn = ("attn.sampling_offsets", "attn.attention_weights", "attn.value_proj", "attn.output_proj")
    for i in range(n_interactions):
        pre = f"backbone.interactions.{i}"
        keys.append(f"{pre}.injector.gamma")
        for mod in ("query_norm", "feat_norm") + attn:
            keys += [f"{pre}.injector.{mod}.weight", f"{pre}.injector.{mod}.bias"]
        units = ["extractor"] + ([f"extra_extractors.{e}" for e in range(n_extra_extractors)]
                                 if i == n_interactions - 1 else [])
        for u in units:
            for mod in ("query_norm", "feat_norm") + attn + ("ffn.fc1", "ffn.dwconv.dwconv", "ffn.fc2", "ffn_norm"):
                keys += [f"{pre}.{u}.{mod}.weight", f"{pre}.{u}.{mod}.bias"]
    keys += ["backbone.up.weight", "backbone.up.bias"]
    for n in range(1, 5):
        keys += [f"backbone.norm{n}.{p}" for p in _BN]

    def conv_module(prefix):
        return [f"{prefix}.conv.weight"] + [f"{prefix}.bn.{p}" for p in _BN]

    for s in range(n_pool_scales):
        keys += conv_module(f"decode_head.psp_modules.{s}.1")
    keys += conv_module("decode_head.bottleneck")
    for lvl in range(n_levels - 1):
        keys += conv_module(f"decode_head.lateral_convs.{lvl}") + conv_module(f"decode_head.fpn_convs.{lvl}")
    keys += conv_module("decode_head.fpn_bottleneck") + ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    if aux:
        keys += conv_module("auxiliary_head.convs.0") + ["auxiliary_head.conv_seg.weight",
                                                         "auxiliary_head.conv_seg.bias"]
    return keys


# --- converting -------------------------------------------------------------------------------------------

@dataclass
class ConversionReport:
    """What a conversion did besides renaming."""
    renamed: int = 0
    dropped: dict[str, str] = field(default_factory=dict)     # key -> why (no counterpart)
    unexpected: list[str] = field(default_factory=list)       # keys no rule covers (dropped too, with a warning)
    reshaped: dict[str, str] = field(default_factory=dict)    # key -> what was done

    def to_dict(self) -> dict:
        return {"renamed": self.renamed, "dropped": self.dropped, "unexpected": self.unexpected,
                "reshaped": self.reshaped}


def _why(key: str, table: dict[str, str]) -> str | None:
    return next((why for pattern, why in table.items() if re.fullmatch(pattern, key)), None)


def _as_state(obj: Any) -> dict[str, torch.Tensor]:
    """A state dict from a state dict, an mmcv checkpoint dict or :func:`load_release_checkpoint`'s dict."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise TypeError("expected a state dict (name -> tensor) or an mmseg checkpoint with a 'state_dict'")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def convert_release_state(state: Mapping[str, torch.Tensor], report: ConversionReport | None = None,
                          ) -> dict[str, torch.Tensor]:
    """The release's state dict (or the mmcv checkpoint holding it) -> our ``SegModel`` key names and layouts.

    Floating tensors become float32 (the release trained in fp16 mixed precision). ``backbone.pos_embed``
    loses its class-token slot. Keys without a counterpart (:data:`RELEASE_ONLY`) are dropped and listed in
    ``report``; keys no rule covers are dropped with a warning naming them. A key of the release's
    ViT-Adapter-B layout (:func:`release_key_names`) that is missing is an error naming it: our model would be
    incomplete. The auxiliary head is optional (a checkpoint stripped of it converts to a model without one).
    The result has everything of our model but ``bank``, ``signatures`` and ``warmup_classifier`` (see
    :data:`OURS_ONLY`; :func:`release_to_run` adds them)."""
    report = report if report is not None else ConversionReport()
    state = _as_state(state)
    has_aux = any(k.startswith("auxiliary_head.") for k in state)
    missing = [k for k in release_key_names(aux=has_aux) if k not in state]
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensor(s) of the release's ViT-Adapter-B + UperNet "
                         f"layout, e.g. {missing[:8]}: our model would be incomplete. Is it the ADE20K/COCO/"
                         "Pascal/Cityscapes ViT-Adapter-B release (not a BEiT-Adapter-L one)?")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise TypeError(f"{key}: not a tensor ({type(value).__name__})")
        why = _why(key, RELEASE_ONLY)
        if why:
            report.dropped[key] = why
            continue
        ours = release_to_ours_key(key)
        if ours is None:
            report.unexpected.append(key)
            continue
        v = value.detach().cpu()
        v = v.float() if v.is_floating_point() else v
        if key == _POS_EMBED:
            v = _drop_class_slot(v)
            report.reshaped[key] = f"{tuple(value.shape)} -> {tuple(v.shape)}: class-token slot dropped"
        out[ours] = v.contiguous()
        report.renamed += 1
    if report.unexpected:
        warnings.warn(f"{len(report.unexpected)} checkpoint key(s) have no counterpart in prolab's model and were "
                      f"dropped: {report.unexpected[:8]}", stacklevel=2)
    if report.dropped:
        log.info("dropped %s", ", ".join(f"{k} ({w})" for k, w in report.dropped.items()))
    return out


def ours_to_release(state: Mapping[str, torch.Tensor], report: ConversionReport | None = None,
                    ) -> dict[str, torch.Tensor]:
    """Our ``SegModel`` state dict -> the release's key names and layouts (the inverse of
    :func:`convert_release_state`). ``pos_embed`` gets back a class-token slot of zeros (the release's forward
    skips it); ``bank``, ``signatures`` and ``warmup_classifier`` have no place there and are left out
    (``report.dropped``). Any other key no rule covers is an error: it would be lost silently."""
    report = report if report is not None else ConversionReport()
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        why = _why(key, OURS_ONLY)
        if why:
            report.dropped[key] = why
            continue
        rel = ours_to_release_key(key)
        if rel is None:
            unmapped.append(key)
            continue
        v = value.detach().cpu()
        if key == _POS_EMBED:
            v = torch.cat([v.new_zeros(v.shape[0], 1, v.shape[2]), v], 1)
            report.reshaped[key] = f"{tuple(value.shape)} -> {tuple(v.shape)}: zero class-token slot added"
        out[rel] = v.contiguous()
        report.renamed += 1
    if unmapped:
        raise ValueError(f"{len(unmapped)} key(s) have no place in the release's layout: {unmapped[:8]} (is the "
                         "model a vit_adapter_base SegModel?)")
    return out


def _drop_class_slot(pe: torch.Tensor) -> torch.Tensor:
    if pe.ndim != 3 or pe.shape[0] != 1:
        raise ValueError(f"backbone.pos_embed has shape {tuple(pe.shape)}, expected (1, 1 + g*g, D)")
    n = pe.shape[1] - 1
    g = int(round(n ** 0.5))
    if g * g != n:
        raise ValueError(f"backbone.pos_embed has {pe.shape[1]} positions: not a class slot + a square grid")
    return pe[:, 1:]
