"""The optimiser's parameter groups (layer-wise lr decay, no decay on norms and biases) and the schedule."""
from __future__ import annotations

import re

import torch

from .config import TrainConfig

# backbone parameters before the first layer (decayed most); other unnumbered backbone modules (ViT-Adapter's
# spatial prior module and interactions, a plain ViT's pyramid) are new layers and get the head's rate
_STEM = re.compile(r"^backbone\.(?:body\.|model\.)*(?:patch_embed|pos_embed|cls_token|stem|conv_stem|bn1|conv1)")


def _layer_id(name: str, n_layers: int) -> int:
    if not name.startswith("backbone."):
        return n_layers + 1
    m = re.search(r"(?:blocks|stages|layers?)[._](\d+)", name)
    if m:
        return int(m.group(1)) + 1
    return 0 if _STEM.match(name) else n_layers + 1


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: layer-wise lr decay over backbone stages; no weight decay on norms and biases. The kit's
    trainer and its mmseg optimiser constructor both build their groups here."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ids = [int(m.group(1)) for n, _ in named if (m := re.search(r"(?:blocks|stages|layers?)[._](\d+)", n))
           and n.startswith("backbone.")]
    n_layers = max(ids) + 1 if ids else 0
    groups: dict[tuple, dict] = {}
    for n, p in named:
        lid = _layer_id(n, n_layers)
        scale = layer_decay ** (n_layers + 1 - lid)
        wd = 0.0 if p.ndim <= 1 else weight_decay
        g = groups.setdefault((lid, wd), {"params": [], "lr_scale": scale, "weight_decay": wd, "lr": lr * scale})
        g["params"].append(p)
    return list(groups.values())


def lr_factor(it: int, cfg: TrainConfig) -> float:
    """Linear warm-up to the base lr, then poly decay to 0 at ``iters``."""
    poly = (1 - min(it, cfg.iters) / cfg.iters) ** cfg.poly_power
    if cfg.warmup_iters and it < cfg.warmup_iters:
        return poly * (1e-6 + (1 - 1e-6) * it / cfg.warmup_iters)
    return poly

