"""Reading a weights file: one loader for every backbone (timm models, the ViT-Adapter's ViT), so no pickle
code ever runs."""
from __future__ import annotations

from pathlib import Path

import torch


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
