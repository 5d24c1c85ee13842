"""The plug-in's mmengine hooks. The one-hot warm-up: for the first ``iters`` iterations the decode head trains a
C-way classifier with cross-entropy on the same decoder (the auxiliary head is off), then property supervision
takes over, as ``TrainConfig.onehot_warmup_iters`` does in the kit's trainer. The class check: a property space
is bound to its classes in label order, as in ``prolab train``."""
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


def _heads(runner) -> list:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    aux = getattr(model, "auxiliary_head", None)
    heads = [getattr(model, "decode_head", None)] + (list(aux) if hasattr(aux, "__iter__") else [aux])
    return [h for h in heads if getattr(h, "space_classes", None) is not None]


@HOOKS.register_module()
class ProLabClassCheckHook(Hook):
    """Before training, validation and testing: every ProLab head's property space must hold the dataset's
    classes in the dataset's order (``metainfo['classes']``), or its rows would be scored under other names.
    ``prolab.interop.mmseg.train`` adds it to every config that lacks it."""
    priority = "VERY_HIGH"

    def _check(self, runner, loop: str) -> None:
        from ...datasets.classes import check_same_classes

        dataset = getattr(getattr(getattr(runner, loop, None), "dataloader", None), "dataset", None)
        classes = getattr(dataset, "metainfo", {}).get("classes") if dataset is not None else None
        if classes is None:
            return
        for head in _heads(runner):
            check_same_classes(head.space_classes, [str(c) for c in classes],
                               f"the property space of {type(head).__name__}",
                               f"dataset {type(dataset).__name__} ({loop.replace('_loop', '')})")

    def before_train(self, runner) -> None:
        self._check(runner, "train_loop")

    def before_val(self, runner) -> None:
        self._check(runner, "val_loop")

    def before_test(self, runner) -> None:
        self._check(runner, "test_loop")
