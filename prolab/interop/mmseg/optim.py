"""The kit's parameter groups in mmengine: layer-wise lr decay over the backbone's layers (0.95 over the 12 ViT
layers in the paper; the ViT-Adapter's own modules get the head's rate) and no weight decay on norms and
biases, from ``train.optim.param_groups``, the same function the kit's trainer uses."""
from __future__ import annotations

from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from ...train.optim import param_groups


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ProLabOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``optim_wrapper = dict(type=..., optimizer=dict(type="AdamW", lr=..., weight_decay=...),
    constructor="ProLabOptimWrapperConstructor", paramwise_cfg=dict(layer_decay=0.95))``."""

    def __call__(self, model):
        if is_model_wrapper(model):
            model = model.module
        cfg = self.optim_wrapper_cfg.copy()
        opt = dict(self.optimizer_cfg)
        layer_decay = float((self.paramwise_cfg or {}).get("layer_decay", 1.0))
        if not 0 < layer_decay <= 1:
            raise ValueError(f"paramwise_cfg.layer_decay must be in (0, 1], not {layer_decay}")
        groups = param_groups(model, float(opt["lr"]), float(opt.get("weight_decay", 0.0)), layer_decay)
        for g in groups:
            g.pop("lr_scale", None)
        opt["params"] = groups
        cfg["optimizer"] = OPTIMIZERS.build(opt)
        cfg.setdefault("type", "OptimWrapper")
        return OPTIM_WRAPPERS.build(cfg)
