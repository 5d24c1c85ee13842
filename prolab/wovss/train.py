"""PGSeg's training on a CPU: groups learned from captions built from image-level labels.

The CPU model (``GroupingModel``) keeps PGSeg's grouping and losses and changes the two encoders, because a
GroupViT trained from scratch for minutes on a CPU does not group (see the issue that asked for this stage):
the image side starts from the ImageNet MobileNetV2 the kit ships (its stride-16 feature map as the patch
tokens, through a linear map and learned positions; frozen by default, so its features are computed once),
followed by GroupViT's grouping stages (transformers' ``GroupViTVisionEncoder`` with the ``cpu`` preset: 16 then
4 groups); the text side is the packaged MiniLM, frozen, through a learned projection (no tokenizer download).
Both land in one joint space. Loss: the label-aware contrastive loss (``captions.multi_positive_infonce``) plus
``npr_weight`` x L_PG of each grouping stage (``npr``; ``released_code`` switches to the official code's
departures, the EM reconstruction added to the grouping blocks' input tokens included) plus the kit's
assignment guidance (``assignment_guidance``, weight ``guidance``): at this scale L_PG alone leaves the groups
collapsed, and the guidance, which reads the same EM prototypes and the same matching, makes them follow the
image. It teaches the mechanics; it reproduces no number of the paper.
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .captions import EVAL_TEMPLATE, MIN_SHARE, caption, image_labels, multi_positive_infonce, positives_from_labels
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
    npr_weight: float = NPR_WEIGHT      # the paper's weight of each stage's L_PG
    guidance: float = 1.0               # the kit's assignment guidance (0: off, as in the paper); see assignment_guidance
    balance: float = 0.0                # the kit's anti-collapse term (0: off, as in the paper); see group_balance
    group_naming: float = 0.0           # the kit's per-group naming term (0: off, as in the paper); see group_naming_loss
    gumbel: bool = True                 # the paper's Gumbel noise on the training assignment (False: plain argmax)
    positions: bool = True              # learned position embeddings on the tokens
    freeze_backbone: bool = True        # keep the ImageNet tokens fixed (the grouping stages learn on top)
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
        self.pos = nn.Parameter(torch.randn(1, side * side, p.hidden_size) * 0.02, requires_grad=cfg.positions)
        if not cfg.positions:
            self.pos.data.zero_()
        self.encoder = GroupViTVisionEncoder(vision)
        self.norm = nn.LayerNorm(p.hidden_size)
        if not cfg.gumbel:
            _without_gumbel_noise(self.encoder)
        self.image_proj = _mlp(p.hidden_size, p.projection_intermediate_dim, p.projection_dim)
        self.text_proj = _mlp(text_dim, p.projection_intermediate_dim, p.projection_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / TEMPERATURE_INIT)))
        # the released code adds an MLP of each token's EM reconstruction (its responsibilities times the
        # prototypes) to the tokens entering every grouping block, in training and at evaluation; made last and
        # on a forked random stream, so that both settings start from the same weights and draw the same noise
        self.em_recon = nn.ModuleList()
        self.em_generator = torch.Generator().manual_seed(cfg.seed)
        if cfg.released_code:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)
                for stage in self.encoder.stages:
                    if stage.downsample is not None:
                        mlp = _mlp(p.hidden_size, p.hidden_size, p.hidden_size)
                        self.em_recon.append(mlp)
                        stage.downsample.register_forward_pre_hook(functools.partial(self._add_reconstruction, mlp))

    def _add_reconstruction(self, mlp: nn.Module, block: nn.Module, args: tuple) -> tuple:
        tokens, groups = args
        # a fixed generator at evaluation: the same image gets the same EM start, hence the same groups
        generator = self.em_generator if self.training else torch.Generator().manual_seed(0)
        protos, resp = em_prototypes(tokens, groups.shape[1], generator=generator)
        return tokens + mlp(resp @ protos), groups

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[2]                                    # (B, C, h, w) at stride 16

    def train(self, mode: bool = True):
        super().train(mode)
        if not any(p.requires_grad for p in self.backbone.parameters()):
            self.backbone.eval()                                           # frozen: its BatchNorm statistics too
        return self

    def forward(self, images: torch.Tensor | None = None, feats: torch.Tensor | None = None) -> dict:
        """From images, or from the backbone's features of them (a frozen backbone's are computed once)."""
        feats = self.features(images) if feats is None else feats
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


def check_image_size(cfg: WovssConfig, size: tuple[int, int]) -> None:
    """The token grid is fixed by ``image_size``: refuse a dataset whose images have another size (no resize is
    made), naming both."""
    if size != (cfg.image_size, cfg.image_size):
        raise ValueError(f"image_size = {cfg.image_size}, but the embedded default's images are {size[1]}x{size[0]} "
                         "pixels: the model's token grid is made for square images of image_size (set it to theirs)")


def _without_gumbel_noise(encoder: nn.Module) -> None:
    """The training assignment of every grouping block as a straight-through argmax without Gumbel noise
    (transformers always adds the noise in training; its evaluation path is unchanged)."""
    import types

    from transformers.models.groupvit.modeling_groupvit import GroupViTAssignAttention

    def get_attn(self, attn, gumbel=True, hard=True):
        return type(self).get_attn(self, attn, gumbel=False, hard=hard)

    for m in encoder.modules():
        if isinstance(m, GroupViTAssignAttention):
            m.get_attn = types.MethodType(get_attn, m)


def npr_losses(out: dict, cfg: WovssConfig, generator: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per grouping stage: L_PG (EM prototypes of the stage's input tokens, as many as its output groups,
    matched to the groups it made) and the kit's assignment guidance (``assignment_guidance``)."""
    hs, pg, guide = out["stage_inputs"], [], []
    for i, assignment in enumerate(out["assignments"]):
        inputs, groups = hs[i], hs[i + 1]
        protos, resp = em_prototypes(inputs, groups.shape[1], generator=generator)
        match = match_prototypes(groups, protos, released_code=cfg.released_code)
        pg.append(pg_loss(groups, protos, match, phi=cfg.phi, released_code=cfg.released_code).value)
        guide.append(assignment_guidance(assignment, resp, match))
    return pg, guide


def assignment_guidance(assignment: torch.Tensor, responsibilities: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """The kit's prototype guidance on the assignment (not PGSeg's, which guides the group centres only): each
    token's soft assignment over the G groups (B, G, N) is pulled, by cross-entropy, towards its EM
    responsibilities (B, N, G) over the prototypes, read through the matching (B, G: the prototype of each group),
    so group g takes the tokens its matched prototype explains. With the released code's matching (the least
    similar pairs) the targets are the wrong clusters."""
    target = responsibilities.gather(2, match[:, None, :].expand(-1, responsibilities.shape[1], -1))  # (B, N, G)
    logp = assignment.clamp_min(1e-8).log().transpose(1, 2)                                           # (B, N, G)
    return -(target * logp).sum(-1).mean()


def group_balance(assignments: list[torch.Tensor]) -> torch.Tensor:
    """The kit's anti-collapse term (not PGSeg's), minus the mutual information between a token and its group
    in each image, up to a constant: log G minus the entropy of the image's share of tokens per group (0 when
    the groups take as many tokens each, log G when one takes all) plus each token's own assignment entropy
    (0 when it is sure of its group; without it, uniform assignments would look balanced). Averaged over images,
    summed over stages; soft assignments (B, G, N)."""
    total = 0.0
    for a in assignments:
        a = a.clamp_min(1e-8)
        share = a.mean(-1)                                                 # (B, G), sums to 1 per image
        spread = math.log(a.shape[1]) + (share * share.log()).sum(-1)
        doubt = -(a * a.log()).sum(1).mean(-1)                             # each token's entropy over groups
        total = total + (spread + doubt).mean()
    return total


def group_naming_loss(groups: torch.Tensor, texts: torch.Tensor, labels: list[list[int]], scale: torch.Tensor
                      ) -> torch.Tensor:
    """The kit's per-group naming term (not PGSeg's): each class an image's caption names should be the best
    match of one of its groups. ``groups`` (B, G, D), ``texts`` (C, D) the prompts of the training vocabulary,
    ``labels`` the class indices per image. Class score of an image = its best group's scaled cosine; loss =
    the mean over named classes of -log softmax over the vocabulary of those scores."""
    z, t = F.normalize(groups, dim=-1), F.normalize(texts, dim=-1)
    scores = scale * torch.einsum("bgd,cd->bgc", z, t).amax(1)             # (B, C)
    logp = scores.log_softmax(-1)
    terms = [logp[i, c] for i, ids in enumerate(labels) for c in ids]
    return -torch.stack(terms).mean() if terms else scores.sum() * 0


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


_MEMO: dict = {}   # per process: the training data and frozen features (train_wovss); a few tens of MB


def train_wovss(cfg: WovssConfig, progress: bool = True) -> tuple[GroupingModel, list[dict]]:
    """Train the CPU model on the embedded default's training split; returns the model (eval mode) and one log
    row per iteration (loss terms, seconds)."""
    from .. import paths
    from ..datasets import seen_class_names
    from ..datasets.transforms import to_tensor
    from ..embed import make_embedder
    from ..progress import tqdm
    from ..train.config import TrainConfig
    from ..train.data import open_split

    torch.manual_seed(cfg.seed)
    # what does not depend on the run's weights is computed once per process (notebook 14 trains four runs on the
    # same data): the captions, their embeddings and the images, keyed by the settings that make them
    data_key = ("data", str(paths.datasets_dir()), cfg.min_share, cfg.seed, cfg.text_embedder)
    if data_key not in _MEMO:
        ds = open_split(TrainConfig.demo(), "train")
        names = list(ds.class_names)
        embedder = make_embedder(cfg.text_embedder)
        bank = CaptionBank(ds, names, embedder, cfg.min_share, cfg.seed)
        # the prompts of the seen classes only: an unseen name never enters training, not even as a negative
        seen = [names.index(n) for n in seen_class_names("synthetic_outdoor")]
        vocab = class_texts(embedder, [names[i] for i in seen])
        images = torch.stack([to_tensor(ds.load(i)[0]) for i in range(len(ds))])
        _MEMO[data_key] = (bank, vocab, {c: k for k, c in enumerate(seen)}, images)
    bank, vocab, position, images = _MEMO[data_key]
    check_image_size(cfg, tuple(images.shape[-2:]))
    model = GroupingModel(cfg, bank.embeddings.shape[1]).train()
    cached = None
    if cfg.freeze_backbone:
        model.backbone.requires_grad_(False)
        model.train()
        # a frozen backbone's features of each image and its mirror, once (a random backbone's depend on the seed)
        feat_key = ("features", data_key[1], cfg.pretrained, cfg.seed if cfg.pretrained is None else None,
                    cfg.image_size)
        if feat_key not in _MEMO:
            with torch.no_grad():
                _MEMO[feat_key] = [torch.cat([model.features(images[i:i + 64].flip(-1) if mirror else images[i:i + 64])
                                              for i in range(0, len(images), 64)]) for mirror in (False, True)]
        cached = _MEMO[feat_key]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.iters, 1), pct_start=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    log, start = [], time.perf_counter()
    for it in tqdm(range(cfg.iters), desc="wovss training", disable=not progress):
        idx = torch.randperm(len(images), generator=g)[:cfg.batch_size]
        flip = torch.rand(len(idx), generator=g) < 0.5
        if cached is None:
            x = images[idx]
            out = model(torch.where(flip[:, None, None, None], x.flip(-1), x))
        else:
            out = model(feats=torch.where(flip[:, None, None, None], cached[1][idx], cached[0][idx]))
        pos = positives_from_labels([bank.labels[i] for i in idx.tolist()])
        contrastive = multi_positive_infonce(out["image"], model.text(bank.embeddings[idx]), pos, model.scale())
        npr, guide = npr_losses(out, cfg, g) if cfg.npr or cfg.guidance else ([], [])
        naming = torch.zeros(())
        if cfg.group_naming:
            targets = [[position[c] for c in bank.labels[i]] for i in idx.tolist()]
            naming = group_naming_loss(out["groups"], model.text(vocab), targets, model.scale())
        balance = group_balance(out["assignments"]) if cfg.balance else torch.zeros(())
        loss = (contrastive + (cfg.npr_weight * sum(npr) if cfg.npr else 0) + cfg.guidance * sum(guide)
                + cfg.balance * balance + cfg.group_naming * naming)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        log.append({"iteration": it + 1, "loss": loss.item(), "contrastive": contrastive.item(),
                    "balance": balance.item(), "naming": naming.item(),
                    **{f"pg_stage{k + 1}": v.item() for k, v in enumerate(npr)},
                    **{f"guidance_stage{k + 1}": v.item() for k, v in enumerate(guide)},
                    "seconds": round(time.perf_counter() - start, 2)})
    return model.eval(), log


def class_texts(embedder, class_names: list[str], descriptor_file=None) -> torch.Tensor:
    """(C, D) sentence embeddings the groups are named against: "a photo of a {class}." for each class, or, with
    ``descriptor_file`` (a ProLab descriptor file of these classes), the mean of each class's description
    embeddings (each unit length), as ProLab would describe the class instead of naming it."""
    if descriptor_file is None:
        return torch.from_numpy(np.asarray(embedder.encode([EVAL_TEMPLATE.format(n) for n in class_names]))).float()
    from .. import paths
    from ..describe.descriptors import load_descriptors

    descriptions = load_descriptors(paths.resolve(descriptor_file), class_names)
    rows = []
    for name in class_names:
        e = F.normalize(torch.from_numpy(np.asarray(embedder.encode(descriptions[name]))).float(), dim=-1)
        rows.append(F.normalize(e.mean(0), dim=-1))
    return torch.stack(rows)


@torch.no_grad()
def evaluate_wovss(model: GroupingModel, cfg: WovssConfig, embedder=None, limit: int | None = None,
                   progress: bool = True, descriptor_file=None) -> dict:
    """On the embedded default's val split: oracle-named mIoU of the final groups and of stage 1's, and the
    zero-shot named mIoU (groups named among the image's top-5 classes by "a photo of a {}."), seen and unseen
    IoU; each with the trivial grid of the same number of groups beside it (``baselines``); and the unseen-class
    protocol's seen mIoU, unseen mIoU and harmonic mean of the named prediction on the images that protocol
    scores (``evaluate.unseen``: the odd positions), so PGSeg sits beside the kit's unseen grid. With
    ``descriptor_file`` the groups are named against the classes' descriptions (``class_texts``)."""
    from ..datasets.transforms import to_tensor
    from ..embed import make_embedder
    from ..evaluate.metrics import confusion_matrix, metrics_from_confusion
    from ..evaluate.unseen import gzsl_scores
    from ..datasets import seen_class_names, unseen_class_names
    from ..progress import tqdm
    from ..train.config import TrainConfig
    from ..train.data import open_split
    from .baselines import grid_groups
    from .zero_shot import name_groups, oracle_labels, pixel_labels

    ds = open_split(TrainConfig.demo(), "val")
    names = list(ds.class_names)
    c = len(names)
    embedder = embedder or make_embedder(cfg.text_embedder)
    texts = model.text(class_texts(embedder, names, descriptor_file))   # names, or ProLab's descriptions
    side = cfg.image_size // STRIDE
    g1, g2 = PRESETS[cfg.preset].num_output_groups[:2]
    cms = {k: np.zeros((c, c), np.int64) for k in ("oracle final", "oracle stage 1", "named", 1, g2, g1)}
    n = len(ds) if limit is None else min(limit, len(ds))
    odd = np.zeros((c, c), np.int64)
    used, largest = [], []                                # final groups holding pixels; the largest one's share
    for i in tqdm(range(n), desc="wovss evaluation", disable=not progress):
        image, label = ds.load(i)
        x = to_tensor(image)[None]
        check_image_size(cfg, tuple(x.shape[-2:]))
        out = model(x)
        s1, s2 = out["assignments"]
        final = compose_assignments(s1, s2)[0]                             # (G, tokens)
        h, w = label.shape

        def up(a):                                                         # (G, tokens) -> (G, H, W), nearest
            return F.interpolate(a.view(1, -1, side, side), size=(h, w), mode="nearest")[0]

        truth = torch.from_numpy(label.astype(np.int64)).ravel()
        groupings = {"oracle final": up(final).argmax(0), "oracle stage 1": up(s1[0]).argmax(0),
                     **{n: torch.from_numpy(grid_groups(h, w, n)) for n in (1, g2, g1)}}   # the trivial grids
        counts = torch.bincount(groupings["oracle final"].ravel(), minlength=final.shape[0]).float()
        used.append(int((counts > 0).sum()))
        largest.append(float(counts.max() / counts.sum()))
        for key, groups in groupings.items():
            named = oracle_labels(groups.ravel(), truth, c).numpy().reshape(h, w)
            cms[key] += confusion_matrix(named, label, c)
        probs = name_groups(out["groups"][0], texts, out["image"][0], float(model.scale()))
        pred = pixel_labels(up(final).view(final.shape[0], -1), probs).numpy().reshape(h, w)
        cms["named"] += confusion_matrix(pred, label, c)
        if i % 2:                              # the unseen protocol's test images (evaluate.unseen: odd positions)
            odd += confusion_matrix(pred, label, c)
    unseen = unseen_class_names("synthetic_outdoor")
    res = {"final groups": {"used per image": round(float(np.mean(used)), 2),
                            "largest share": round(float(np.mean(largest)), 3), "of": g2},
           "trivial grid": {},
           "unseen protocol": {**gzsl_scores(odd, names, seen_class_names("synthetic_outdoor"), unseen),
                               "images": len(range(1, n, 2))}}
    for key, cm in cms.items():
        m = metrics_from_confusion(cm, names)
        if isinstance(key, int):
            res["trivial grid"][key] = round(m["mIoU"], 2)
            continue
        res[key] = {"mIoU": round(m["mIoU"], 2),
                    "unseen IoU": {u: round(float(m["per_class"].loc[u, "IoU"]), 2) for u in unseen}}
    res["config"] = asdict(cfg)
    res["naming"] = "class names" if descriptor_file is None else f"descriptions: {os.path.basename(str(descriptor_file))}"
    return res


__all__ = ["WovssConfig", "GroupingModel", "CaptionBank", "npr_losses", "group_balance", "group_naming_loss",
           "train_wovss", "evaluate_wovss", "check_image_size", "class_texts", "assignment_guidance"]
