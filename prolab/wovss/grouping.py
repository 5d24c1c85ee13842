"""Assigning tokens to groups, as GroupViT's grouping blocks do (arXiv 2202.11094; PGSeg builds on it).

A grouping block compares its group tokens (queries) with the image tokens (keys): ``logits`` of shape
(B, G, N), one column per token. Each token goes to one group: the assignment is normalised over the group axis
(dim -2). In training the choice is hard, a one-hot column per token, with the soft assignment's gradient
(straight-through), and Gumbel noise on the logits explores other groups; at evaluation the soft assignment is
used. Two stages compose: stage 1 assigns the N patch tokens to G1 groups, stage 2 the G1 groups to G2, so the
pixel -> final-group map is the product of the two assignments.
"""
from __future__ import annotations

import torch


def hard_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The one-hot of the softmax's argmax in the forward pass, the softmax's gradient in the backward pass."""
    soft = logits.softmax(dim)
    index = soft.argmax(dim, keepdim=True)
    hard = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return hard - soft.detach() + soft


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, hard: bool = True, dim: int = -1,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Softmax of ``(logits + g) / tau`` with g ~ Gumbel(0, 1) drawn from ``generator`` (seeded: reproducible);
    ``hard``: straight-through one-hot (``hard_softmax``)."""
    if tau <= 0:
        raise ValueError(f"tau = {tau}: the Gumbel-softmax temperature must be > 0")
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
    gumbel = -torch.log((-torch.log(u.clamp(1e-20, 1.0))).clamp_min(1e-20))
    y = (logits + gumbel) / tau
    return hard_softmax(y, dim) if hard else y.softmax(dim)


def token_assignment(logits: torch.Tensor, training: bool, gumbel: bool = True, hard: bool = True,
                     tau: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, G, N) group-token x image-token logits -> (B, G, N) assignment, each token's column summing to 1:
    in training a hard (straight-through) Gumbel assignment, at evaluation the soft one."""
    if logits.dim() != 3:
        raise ValueError(f"logits of shape {tuple(logits.shape)}: expected (batch, groups, tokens)")
    if not training:
        return logits.softmax(-2)
    if gumbel:
        return gumbel_softmax(logits, tau=tau, hard=hard, dim=-2, generator=generator)
    return hard_softmax(logits, -2) if hard else logits.softmax(-2)


def compose_assignments(stage1: torch.Tensor, stage2: torch.Tensor) -> torch.Tensor:
    """Stage 1 (B, G1, N) and stage 2 (B, G2, G1) -> (B, G2, N): each token's weight on each final group. Columns
    summing to 1 in both stages keep summing to 1."""
    if stage1.shape[0] != stage2.shape[0] or stage2.shape[-1] != stage1.shape[-2]:
        raise ValueError(f"stage 1 {tuple(stage1.shape)} and stage 2 {tuple(stage2.shape)} do not compose: "
                         "stage 2 must assign stage 1's groups (B, G2, G1)")
    return stage2 @ stage1


__all__ = ["hard_softmax", "gumbel_softmax", "token_assignment", "compose_assignments"]
