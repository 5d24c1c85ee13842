"""Callbacks of the training loop: code that changes what one iteration does without living in the loop.

A callback's ``before_step(it, step)`` may add keyword arguments for the model's forward (``step["forward"]``)
and name the iteration's phase in the log (``step["phase"]``). The one-hot warm-up is one, as the kit's mmseg
plug-in does it with ``ProLabOneHotWarmupHook``.
"""
from __future__ import annotations


class Callback:
    def before_step(self, it: int, step: dict) -> None:  # noqa: B027 - a no-op default
        pass


class OneHotWarmup(Callback):
    """For the first ``iters`` iterations the head trains a one-hot classifier (category cross-entropy) before
    the property head takes over (``TrainConfig.onehot_warmup_iters``; property runs only)."""

    def __init__(self, iters: int):
        self.iters = int(iters)

    def before_step(self, it: int, step: dict) -> None:
        if it < self.iters:
            step["forward"]["warmup"] = True
            step["phase"] = "one-hot"
