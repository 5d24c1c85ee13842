"""Non-learnable prototypical regularisation (NPR) and the prototype-guidance loss L_PG of PGSeg.

For a grouping stage with G groups: the stage's input tokens are clustered by EM into G prototypes (NPR-I; no
parameters, so "non-learnable"), the prototypes are matched one to one with the stage's group centres by the
Hungarian algorithm on their cosine similarity, and L_PG pulls each group centre towards its matched prototype
and away from the others (a contrastive loss over the G prototypes), leaving out pairs whose matched similarity
is below the hard-rejection threshold phi (0.1 in the paper). Prototypes can be smoothed over training by an
exponential moving average. PGSeg's total loss is the image-text contrastive loss plus
0.1 (L_stage1 + L_stage2 + 0.1 L_text).

``released_code=True`` reproduces the official code where it departs from the paper, each checkable in its
files: the Hungarian matching without ``maximize=True`` (it pairs the *least* similar), the rejection reading
column 0 of the similarity matrix instead of its diagonal, and the image-side EMA never running.

Settings the facts file does not record (the EM concentration ``kappa``, the L_PG temperature, the EMA momentum)
are the kit's choices, named as such where they are defined. The EM is the torch, per-image form of the vMF EM
the kit clusters descriptions with (``prolab.properties.clustering``): responsibilities by a softmax over scaled
cosines, means re-normalised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

EM_ITERS = 10          # the paper's EM iterations
PHI = 0.1              # the paper's hard-rejection threshold
NPR_WEIGHT = 0.1       # L_stage1 and L_stage2 weight in the total loss; L_text gets 0.1 x 0.1
KAPPA = 20.0           # the kit's choice: concentration of the EM responsibilities (softmax over kappa x cosine)
PG_TEMPERATURE = 0.1   # the kit's choice: temperature of the L_PG softmax over prototypes
EMA_MOMENTUM = 0.9     # the kit's choice


def em_prototypes(tokens: torch.Tensor, n: int, iters: int = EM_ITERS, kappa: float = KAPPA,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """EM over each image's tokens (B, N, D): ``n`` unit-length prototypes (B, n, D) and the final
    responsibilities (B, N, n), each token's row summing to 1. Started from ``n`` distinct tokens per image drawn
    by ``generator`` (a seeded generator makes the result reproducible). No gradient flows: the prototypes are
    targets, not parameters."""
    if tokens.dim() != 3:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)}: expected (batch, tokens, dim)")
    b, length, d = tokens.shape
    if not 1 <= n <= length:
        raise ValueError(f"n = {n} prototypes from {length} tokens: need 1 <= n <= the number of tokens")
    with torch.no_grad():
        x = F.normalize(tokens.float(), dim=-1)
        start = torch.stack([torch.randperm(length, generator=generator)[:n] for _ in range(b)]).to(x.device)
        mu = x.gather(1, start[..., None].expand(-1, -1, d))
        for _ in range(iters):
            resp = (kappa * x @ mu.transpose(1, 2)).softmax(-1)               # E step: (B, N, n)
            mu = F.normalize(resp.transpose(1, 2) @ x, dim=-1)                # M step: weighted means, unit length
        resp = (kappa * x @ mu.transpose(1, 2)).softmax(-1)
    return mu, resp


def match_prototypes(centres: torch.Tensor, prototypes: torch.Tensor, released_code: bool = False) -> torch.Tensor:
    """One-to-one matching of G group centres (B, G, D) with G prototypes (B, G, D) on their cosine similarity:
    (B, G), the prototype index of each centre. The paper maximises the total similarity; the released code
    calls ``linear_sum_assignment`` without ``maximize=True`` and so minimises it."""
    from scipy.optimize import linear_sum_assignment

    if centres.shape != prototypes.shape:
        raise ValueError(f"centres {tuple(centres.shape)} and prototypes {tuple(prototypes.shape)}: one prototype "
                         "per group is matched, so the shapes must agree")
    sim = (F.normalize(centres.detach().float(), dim=-1) @ F.normalize(prototypes.detach().float(), dim=-1)
           .transpose(1, 2)).float().cpu().numpy()          # float again: under autocast the product is half
    out = np.empty(sim.shape[:2], dtype=np.int64)
    for i, s in enumerate(sim):
        rows, cols = linear_sum_assignment(s, maximize=not released_code)
        out[i, rows] = cols
    return torch.from_numpy(out).to(centres.device)


@dataclass
class PGLoss:
    """L_PG for a batch: ``value`` (a scalar tensor), ``kept`` (B, G): pairs that passed the rejection,
    ``similarity`` (B, G, G): cosine of centre i and the prototype matched to centre j (the positive of row i is
    column i)."""
    value: torch.Tensor
    kept: torch.Tensor
    similarity: torch.Tensor


def pg_loss(centres: torch.Tensor, prototypes: torch.Tensor, match: torch.Tensor, phi: float = PHI,
            temperature: float = PG_TEMPERATURE, released_code: bool = False) -> PGLoss:
    """The prototype-guidance loss: prototypes are reordered by ``match`` so that centre i's partner sits in
    column i; each centre's cross-entropy over the G prototypes (cosine / temperature) with its partner as the
    target; a pair whose matched cosine is below ``phi`` is rejected (left out of the mean). The released code
    reads the rejection from column 0 (every row compared with the first centre's partner) instead of the
    diagonal. Gradients reach the centres only."""
    b, g, d = centres.shape
    partner = prototypes.detach().gather(1, match[..., None].expand(-1, -1, d))
    sim = F.normalize(centres, dim=-1) @ F.normalize(partner, dim=-1).transpose(1, 2)
    matched = sim[..., 0] if released_code else sim.diagonal(dim1=1, dim2=2)
    kept = matched.detach() >= phi
    target = torch.arange(g, device=centres.device).repeat(b)
    ce = F.cross_entropy((sim / temperature).reshape(b * g, g), target, reduction="none").view(b, g)
    value = (ce * kept).sum() / kept.sum().clamp_min(1)
    return PGLoss(value, kept, sim.detach())


class EMAPrototypes:
    """Prototypes smoothed over training: ``state <- m state + (1 - m) new``, re-normalised. With
    ``released_code`` the update is never applied (the official code never passes the flag that runs the
    image-side EMA), so the current batch's prototypes are used as they are."""

    def __init__(self, momentum: float = EMA_MOMENTUM, released_code: bool = False):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum = {momentum}: must be in [0, 1)")
        self.momentum, self.released_code = momentum, released_code
        self.state: torch.Tensor | None = None

    def update(self, prototypes: torch.Tensor) -> torch.Tensor:
        new = F.normalize(prototypes.detach(), dim=-1)
        if self.released_code:
            return new
        if self.state is None or self.state.shape != new.shape:
            self.state = new.clone()
        else:
            self.state = F.normalize(self.momentum * self.state + (1 - self.momentum) * new, dim=-1)
        return self.state


__all__ = ["EM_ITERS", "PHI", "NPR_WEIGHT", "KAPPA", "PG_TEMPERATURE", "EMA_MOMENTUM", "em_prototypes",
           "match_prototypes", "PGLoss", "pg_loss", "EMAPrototypes"]
