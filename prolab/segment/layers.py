"""Small building blocks the network files share: a conv-norm-ReLU block, a BatchNorm that tolerates one value
per channel, and the part of timm's ``feature_info`` the decode head reads."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that also trains with one value per channel (batch 1 through the 1x1 pyramid pooling): there it
    normalises with the running statistics instead of failing. Same parameters and results otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1,
                 norm: type[nn.Module] = BatchNorm2d) -> nn.Sequential:
    """k x k conv (same padding, no bias), norm, ReLU: the decode heads' block and the ViT-Adapter stem's."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), norm(cout),
                         nn.ReLU(inplace=True))


class FeatureInfo:
    """The part of timm's ``feature_info`` the model uses: channels and strides of the returned maps."""

    def __init__(self, channels: list[int], reductions: list[int]):
        self._channels, self._reductions = list(channels), list(reductions)

    def channels(self) -> list[int]:
        return list(self._channels)

    def reduction(self) -> list[int]:
        return list(self._reductions)

    def __repr__(self):
        return f"FeatureInfo(channels={self._channels}, reduction={self._reductions})"
