"""Weights between the kit's SegModel and the mmseg model the plug-in builds (same tensors, other names):
``backbone.*`` <-> ``backbone.body.*``, ``decode.*`` <-> ``decode_head.block.*``, ``classifier.*`` <->
``decode_head.classifier.*``, ``warmup_classifier.*`` <-> ``decode_head.warmup_classifier.*``, ``aux.*`` <->
``auxiliary_head.block.*``, ``aux_classifier.*`` <-> ``auxiliary_head.classifier.*``; the frozen bank and
signatures are copied into both heads."""
from __future__ import annotations

KIT_TO_MMSEG = [("backbone.", "backbone.body."), ("decode.", "decode_head.block."),
                ("classifier.", "decode_head.classifier."), ("warmup_classifier.", "decode_head.warmup_classifier."),
                ("aux.", "auxiliary_head.block."), ("aux_classifier.", "auxiliary_head.classifier.")]


def kit_to_mmseg(state: dict) -> dict:
    """A kit SegModel state dict in the plug-in's names."""
    out = {}
    for key, value in state.items():
        if key in ("bank", "signatures"):
            out[f"decode_head.{key}"] = value
            out[f"auxiliary_head.{key}"] = value
            continue
        for a, b in sorted(KIT_TO_MMSEG, key=lambda p: -len(p[0])):
            if key.startswith(a):
                out[b + key[len(a):]] = value
                break
        else:
            raise KeyError(f"no mmseg name for kit parameter {key!r}")
    return out


def mmseg_to_kit(state: dict) -> dict:
    """The plug-in's state dict in the kit's SegModel names (mmengine checkpoints keep it under 'state_dict')."""
    out = {}
    for key, value in state.items():
        if key.startswith("auxiliary_head.") and key.split(".")[-1] in ("bank", "signatures"):
            continue
        if key.startswith("decode_head.") and key.split(".", 1)[1] in ("bank", "signatures"):
            out[key.split(".", 1)[1]] = value
            continue
        for a, b in sorted(KIT_TO_MMSEG, key=lambda p: -len(p[1])):
            if key.startswith(b):
                out[a + key[len(b):]] = value
                break
        else:
            if key.startswith("data_preprocessor."):
                continue
            raise KeyError(f"no kit name for mmseg parameter {key!r}")
    return out
