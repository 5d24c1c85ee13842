"""What notebook 14 looks at inside a wovss model: group maps, the EM clusters beside the assignment they guide,
the matching matrix with its rejected pairs, the share of pairs kept as phi moves (the figures and tables over
them are ``prolab.reports.wovss``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .grouping import compose_assignments
from .npr import PHI, em_prototypes, match_prototypes, pg_loss


@torch.no_grad()
def group_maps(model, images: torch.Tensor, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per image (B, H, W): the group of every pixel after stage 1 and after stage 2 (argmax of the soft
    assignment, nearest upsampling of the token grid), and the EM cluster of stage 1's input tokens with as many
    prototypes as stage 1 has groups (what L_PG pulls the groups towards)."""
    model.eval()
    out = model(images)
    s1, s2 = out["assignments"]
    side = int(round(s1.shape[-1] ** 0.5))
    _, resp = em_prototypes(out["stage_inputs"][0], s1.shape[1], generator=torch.Generator().manual_seed(0))

    def up(a):                                                   # (B, G, tokens) -> (B, H, W) group ids
        return F.interpolate(a.reshape(a.shape[0], a.shape[1], side, side), size=size, mode="nearest").argmax(1).numpy()

    return {"stage 1": up(s1), "final": up(compose_assignments(s1, s2)), "EM (stage 1 input)": up(resp.transpose(1, 2))}


def _stage_prototypes(model, images: torch.Tensor, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A grouping stage's group centres (B, G, D) and the EM prototypes of its input tokens, as many (seeded
    start: the same images give the same prototypes)."""
    model.eval()
    out = model(images)
    inputs, groups = out["stage_inputs"][stage], out["stage_inputs"][stage + 1]
    protos, _ = em_prototypes(inputs, groups.shape[1], generator=torch.Generator().manual_seed(0))
    return groups, protos


@torch.no_grad()
def matching(model, image: torch.Tensor, stage: int = 0, phi: float = PHI) -> dict:
    """One image, one grouping stage: the cosine of every group centre with every EM prototype (rows: groups,
    columns: prototypes), the paper's matching (maximal total similarity) and the released code's (minimal),
    and which matched pairs each rule keeps under ``phi`` (the paper reads the diagonal, the released code
    column 0)."""
    groups, protos = _stage_prototypes(model, image[None], stage)
    sim = (F.normalize(groups, dim=-1) @ F.normalize(protos, dim=-1).transpose(1, 2))[0].numpy()
    res = {"similarity": sim}
    for rule, released in (("paper", False), ("released_code", True)):
        match = match_prototypes(groups, protos, released_code=released)
        loss = pg_loss(groups, protos, match, phi=phi, released_code=released)
        res[rule] = {"match": match[0].numpy(), "kept": loss.kept[0].numpy(), "L_PG": float(loss.value)}
    return res


@torch.no_grad()
def kept_share(model, images: torch.Tensor, phis, stage: int = 0) -> pd.DataFrame:
    """The share of matched (group, prototype) pairs that pass the rejection, for each phi, under each rule."""
    groups, protos = _stage_prototypes(model, images, stage)
    rows = []
    for rule, released in (("paper", False), ("released_code", True)):
        match = match_prototypes(groups, protos, released_code=released)
        for phi in phis:
            kept = pg_loss(groups, protos, match, phi=float(phi), released_code=released).kept
            rows.append({"rule": rule, "phi": float(phi), "kept share": float(kept.float().mean())})
    return pd.DataFrame(rows)


def val_batch(n: int) -> tuple[torch.Tensor, list[np.ndarray], list[str]]:
    """The first ``n`` images of the embedded default's val split as the model reads them (normalised tensors),
    their label maps and the class names."""
    from ..datasets.transforms import to_tensor
    from ..train.config import TrainConfig
    from ..train.data import open_split

    ds = open_split(TrainConfig.demo(), "val")
    if not 1 <= n <= len(ds):
        raise ValueError(f"n = {n}: between 1 and the {len(ds)} val images")
    pairs = [ds.load(i) for i in range(n)]
    return torch.stack([to_tensor(im) for im, _ in pairs]), [lab for _, lab in pairs], list(ds.class_names)


__all__ = ["group_maps", "matching", "kept_share", "val_batch"]
