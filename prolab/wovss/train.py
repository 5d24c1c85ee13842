"""PGSeg's training on a CPU: groups learned from captions built from image-level labels.

The CPU model (``GroupingModel``) keeps PGSeg's grouping and losses and changes the two encoders, because a
GroupViT trained from scratch for minutes on a CPU does not group (see the issue that asked for this stage):
the image side starts from the ImageNet MobileNetV2 the kit ships (its stride-16 feature map as the patch
tokens, through a linear map and learned positions), followed by GroupViT's grouping stages (transformers'
``GroupViTVisionEncoder`` with the ``cpu`` preset: 16 then 4 groups); the text side is the packaged MiniLM,
frozen, through a learned projection (no tokenizer download). Both land in one joint space. Loss: the
label-aware contrastive loss (``captions.multi_positive_infonce``) plus ``NPR_WEIGHT`` x L_PG of each grouping
stage (``npr``; ``released_code`` switches to the official code's departures). It teaches the mechanics; it
reproduces no number of the paper.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .captions import MIN_SHARE, caption, image_labels, multi_positive_infonce, positives_from_labels
from .grouping import compose_assignments
from .model import PRESETS, TEMPERATURE_INIT
from .npr import NPR_WEIGHT, PHI, em_prototypes, match_prototypes, pg_loss

STRIDE = 16          # the backbone level whose map becomes the patch tokens


@dataclass(frozen=True)
class WovssConfig:
    preset: str = "cpu"
    image_size: int = 128               # the embedded default's size: an 8 x 8 grid of tokens at stride 16
    iters: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0
    min_share: float = MIN_SHARE
    npr: bool = True
    phi: float = PHI
    released_code: bool = False
    pretrained: str | None = "offline"  # the image side's ImageNet MobileNetV2 ("offline"), or None
    text_embedder: str = "all-MiniLM-L6-v2"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset = {self.preset!r}: one of {sorted(PRESETS)}")
        if self.image_size % STRIDE or self.iters < 0 or self.batch_size < 2:
            raise ValueError(f"image_size = {self.image_size} (a multiple of {STRIDE}), iters = {self.iters} "
                             f"(>= 0), batch_size = {self.batch_size} (>= 2: a contrastive batch needs negatives)")


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class GroupingModel(nn.Module):
    """ImageNet MobileNetV2 tokens -> GroupViT grouping stages -> groups in the joint space; frozen MiniLM
    caption embeddings -> a projection into the same space."""

    def __init__(self, cfg: WovssConfig, text_dim: int):
        super().__init__()
        from transformers.models.groupvit.modeling_groupvit import GroupViTVisionEncoder

        from ..segment.backbones import create_backbone

        p = PRESETS[cfg.preset]
        vision = p.config().vision_config
        self.backbone = create_backbone("mobilenetv2_100", cfg.pretrained)
        channels = self.backbone.feature_info.channels()[2]
        side = cfg.image_size // STRIDE
        self.to_tokens = nn.Linear(channels, p.hidden_size)
        self.pos = nn.Parameter(torch.randn(1, side * side, p.hidden_size) * 0.02)
        self.encoder = GroupViTVisionEncoder(vision)
        self.norm = nn.LayerNorm(p.hidden_size)
        self.image_proj = _mlp(p.hidden_size, p.projection_intermediate_dim, p.projection_dim)
        self.text_proj = _mlp(text_dim, p.projection_intermediate_dim, p.projection_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / TEMPERATURE_INIT)))

    def forward(self, images: torch.Tensor) -> dict:
        feats = self.backbone(images)[2]                                   # (B, C, h, w) at stride 16
        tokens = self.to_tokens(feats.flatten(2).transpose(1, 2)) + self.pos
        out = self.encoder(hidden_states=tokens, output_hidden_states=True, output_attentions=True,
                           return_dict=True)
        groups = self.norm(out.last_hidden_state)                          # (B, G, hidden)
        return {"groups": self.image_proj(groups), "image": self.image_proj(groups.mean(1)),
                "stage_inputs": out.hidden_states, "assignments": [a for a in out.attentions if a is not None]}

    def text(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.text_proj(embeddings)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)                     # capped at 100, as in the paper


def npr_losses(out: dict, cfg: WovssConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """L_PG of each grouping stage: EM prototypes of the stage's input tokens, as many as its output groups,
    matched to the groups it made."""
    hs, losses = out["stage_inputs"], []
    for i in range(len(out["assignments"])):
        inputs, groups = hs[i], hs[i + 1]
        protos, _ = em_prototypes(inputs, groups.shape[1], generator=generator)
        match = match_prototypes(groups, protos, released_code=cfg.released_code)
        losses.append(pg_loss(groups, protos, match, phi=cfg.phi, released_code=cfg.released_code).value)
    return losses


class CaptionBank:
    """Captions of every training image (classes covering ``min_share``, largest first; the unseen classes are
    ignore-labelled in the training split, so never named) and their frozen text embeddings, one per caption."""

    def __init__(self, dataset, class_names: list[str], embedder, min_share: float, seed: int):
        rng = np.random.default_rng(seed)
        self.labels, self.captions = [], []
        for i in range(len(dataset)):
            _, lab = dataset.load(i)
            ids = image_labels(lab, len(class_names), min_share)
            self.labels.append(ids)
            self.captions.append(caption([class_names[c] for c in ids], rng) if ids else "a photo.")
        unique = sorted(set(self.captions))
        emb = np.asarray(embedder.encode(unique))
        index = {c: i for i, c in enumerate(unique)}
        self.embeddings = torch.from_numpy(emb[[index[c] for c in self.captions]]).float()


def train_wovss(cfg: WovssConfig, progress: bool = True) -> tuple[GroupingModel, list[dict]]:
    """Train the CPU model on the embedded default's training split; returns the model (eval mode) and one log
    row per iteration (loss terms, seconds)."""
    from ..datasets.transforms import to_tensor
    from ..embed import make_embedder
    from ..progress import tqdm
    from ..train.config import TrainConfig
    from ..train.data import open_split

    torch.manual_seed(cfg.seed)
    ds = open_split(TrainConfig.demo(), "train")
    names = list(ds.class_names)
    embedder = make_embedder(cfg.text_embedder)
    bank = CaptionBank(ds, names, embedder, cfg.min_share, cfg.seed)
    images = torch.stack([to_tensor(ds.load(i)[0]) for i in range(len(ds))])
    model = GroupingModel(cfg, bank.embeddings.shape[1]).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.iters, 1), pct_start=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    log, start = [], time.perf_counter()
    for it in tqdm(range(cfg.iters), desc="wovss training", disable=not progress):
        idx = torch.randperm(len(images), generator=g)[:cfg.batch_size]
        x = images[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        out = model(x)
        pos = positives_from_labels([bank.labels[i] for i in idx.tolist()])
        contrastive = multi_positive_infonce(out["image"], model.text(bank.embeddings[idx]), pos, model.scale())
        npr = npr_losses(out, cfg, g) if cfg.npr else []
        loss = contrastive + NPR_WEIGHT * sum(npr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        log.append({"iteration": it + 1, "loss": loss.item(), "contrastive": contrastive.item(),
                    **{f"pg_stage{k + 1}": v.item() for k, v in enumerate(npr)},
                    "seconds": round(time.perf_counter() - start, 2)})
    return model.eval(), log


@torch.no_grad()
def evaluate_wovss(model: GroupingModel, cfg: WovssConfig, embedder=None, limit: int | None = None,
                   progress: bool = True) -> dict:
    """On the embedded default's val split: oracle-named mIoU of the final groups and of stage 1's, and the
    zero-shot named mIoU (groups named among the image's top-5 classes by "a photo of a {}."), seen and unseen
    IoU; each with the trivial grid of the same number of groups beside it (``baselines``)."""
    from ..datasets.transforms import to_tensor
    from ..embed import make_embedder
    from ..evaluate.metrics import confusion_matrix, metrics_from_confusion
    from ..datasets import unseen_class_names
    from ..progress import tqdm
    from ..train.config import TrainConfig
    from ..train.data import open_split
    from .baselines import grid_groups
    from .captions import EVAL_TEMPLATE
    from .zero_shot import name_groups, oracle_labels, pixel_labels

    ds = open_split(TrainConfig.demo(), "val")
    names = list(ds.class_names)
    c = len(names)
    embedder = embedder or make_embedder(cfg.text_embedder)
    texts = model.text(torch.from_numpy(np.asarray(embedder.encode([EVAL_TEMPLATE.format(n) for n in names]))).float())
    side = cfg.image_size // STRIDE
    g1, g2 = PRESETS[cfg.preset].num_output_groups[:2]
    cms = {k: np.zeros((c, c), np.int64) for k in ("oracle final", "oracle stage 1", "named", g2, g1)}
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in tqdm(range(n), desc="wovss evaluation", disable=not progress):
        image, label = ds.load(i)
        out = model(to_tensor(image)[None])
        s1, s2 = out["assignments"]
        final = compose_assignments(s1, s2)[0]                             # (G, tokens)
        h, w = label.shape

        def up(a):                                                         # (G, tokens) -> (G, H, W), nearest
            return F.interpolate(a.view(1, -1, side, side), size=(h, w), mode="nearest")[0]

        truth = torch.from_numpy(label.astype(np.int64)).ravel()
        groupings = {"oracle final": up(final).argmax(0), "oracle stage 1": up(s1[0]).argmax(0),
                     **{n: torch.from_numpy(grid_groups(h, w, n)) for n in (g2, g1)}}   # the trivial grids
        for key, groups in groupings.items():
            named = oracle_labels(groups.ravel(), truth, c).numpy().reshape(h, w)
            cms[key] += confusion_matrix(named, label, c)
        probs = name_groups(out["groups"][0], texts, out["image"][0], float(model.scale()))
        pred = pixel_labels(up(final).view(final.shape[0], -1), probs).numpy().reshape(h, w)
        cms["named"] += confusion_matrix(pred, label, c)
    unseen = unseen_class_names("synthetic_outdoor")
    res = {"trivial grid": {}}
    for key, cm in cms.items():
        m = metrics_from_confusion(cm, names)
        if isinstance(key, int):
            res["trivial grid"][key] = round(m["mIoU"], 2)
            continue
        res[key] = {"mIoU": round(m["mIoU"], 2),
                    "unseen IoU": {u: round(float(m["per_class"].loc[u, "IoU"]), 2) for u in unseen}}
    res["config"] = asdict(cfg)
    return res


def main(argv=None) -> int:
    """``python -m prolab.wovss.train``: train the CPU model, evaluate it on the val split, write one JSON of
    the result (config, environment, loss at the first and last iteration, metrics, the trivial grids)."""
    import argparse
    import json

    from .. import paths
    from ..files import atomic_write_json, environment_info

    p = argparse.ArgumentParser(prog="python -m prolab.wovss.train", description=main.__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=WovssConfig.iters, help="training iterations")
    p.add_argument("--batch_size", type=int, default=WovssConfig.batch_size, help="images per iteration")
    p.add_argument("--lr", type=float, default=WovssConfig.lr, help="peak learning rate (one cycle)")
    p.add_argument("--seed", type=int, default=WovssConfig.seed, help="seed")
    p.add_argument("--released_code", action="store_true", help="the official code's departures from the paper")
    p.add_argument("--no_npr", action="store_true", help="train without L_PG")
    p.add_argument("--out", default=None, help="result JSON (default results/wovss/<setting>-i<iters>-s<seed>.json)")
    a = p.parse_args(argv)
    cfg = WovssConfig(iters=a.iters, batch_size=a.batch_size, lr=a.lr, seed=a.seed, released_code=a.released_code,
                      npr=not a.no_npr)
    model, log = train_wovss(cfg)
    res = evaluate_wovss(model, cfg)
    setting = "released_code" if cfg.released_code else "paper" if cfg.npr else "no_npr"
    out = paths.resolve(a.out) if a.out else paths.results_dir("wovss") / f"{setting}-i{cfg.iters}-s{cfg.seed}.json"
    res.update(first=log[0], last=log[-1], environment=environment_info())
    atomic_write_json(out, res)
    print(json.dumps({k: res[k] for k in ("oracle final", "oracle stage 1", "named", "trivial grid")}, indent=1))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["WovssConfig", "GroupingModel", "CaptionBank", "npr_losses", "train_wovss", "evaluate_wovss"]
