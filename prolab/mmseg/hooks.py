"""The one-hot warm-up as an mmengine hook: for the first ``iters`` iterations the decode head trains a C-way
classifier with cross-entropy on the same decoder (the auxiliary head is off), then property supervision
takes over, as ``TrainConfig.onehot_warmup_iters`` does in the kit's trainer."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class ProLabOneHotWarmupHook(Hook):
    priority = "NORMAL"

    def __init__(self, iters: int = 0):
        if int(iters) < 0:
            raise ValueError(f"ProLabOneHotWarmupHook: iters must be >= 0, not {iters}")
        self.iters = int(iters)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        warm = runner.iter < self.iters
        heads = [getattr(model, "decode_head", None)]
        aux = getattr(model, "auxiliary_head", None)
        heads += list(aux) if hasattr(aux, "__iter__") else [aux]
        for head in heads:
            if head is not None and hasattr(head, "onehot_warmup"):
                head.onehot_warmup = warm
