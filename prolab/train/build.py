"""What a run is supervised with and the network it trains: the property space (or class-name bank) a config
names, its held-out classes, and the model built from both."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..datasets.classes import check_same_classes
from ..defaults import IGNORE_INDEX
from ..segment.model import ModelDefaults, SegModel
from .config import TrainConfig


def default_property_space(dataset: str) -> Path:
    """Stage 2's default space of ``dataset`` (see ``properties.default_space_path``)."""
    from ..properties import default_space_path

    return default_space_path(dataset)


def unseen_ids(cfg: TrainConfig, class_names: list[str]) -> list[int]:
    """Indices of the run's held-out classes (``cfg.unseen``), checked against the dataset's classes."""
    from ..properties.build import unseen_indices

    return unseen_indices(cfg.unseen, class_names, where=f"training config: unseen = {cfg.unseen!r}: dataset "
                                                         f"{cfg.dataset}")


def mask_unseen(labels: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """Held-out classes are never labelled in training: their pixels become 'ignore'."""
    if not len(held):
        return labels
    return torch.where(torch.isin(labels, held), torch.full_like(labels, IGNORE_INDEX), labels)


def run_unseen(cfg: TrainConfig, class_names: list[str]) -> list[str]:
    """Every class a run never saw labelled: its ``unseen`` setting and the dataset's reserved unseen classes."""
    from ..datasets import DATASETS, unseen_class_names

    held = [class_names[c] for c in unseen_ids(cfg, class_names)]
    reserved = unseen_class_names(cfg.dataset) if cfg.dataset in DATASETS else []
    return [c for c in class_names if c in set(held) | set(reserved)]


def load_space_for(cfg: TrainConfig, class_names: list[str]):
    from ..properties import PropertySpace, default_space_path

    held = [class_names[c] for c in unseen_ids(cfg, class_names)]
    path = paths.resolve(cfg.property_space) if cfg.property_space else default_space_path(cfg.dataset, held)
    if not cfg.property_space:  # record the resolved space, so a resume or load_trained uses the very same one
        root = paths.repo_root()
        cfg.property_space = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    space = PropertySpace.load(path)
    check_same_classes(space.class_names, class_names, f"property space {Path(path).name}", f"dataset {cfg.dataset}")
    empty = [c for c, row in zip(space.class_names, np.asarray(space.signatures)) if not row.any()]
    if empty:   # such a class has no target and can never be recovered: cos(p, 0) is undefined
        raise ValueError(f"property space {Path(path).name}: {len(empty)} classes have no property ({empty[:5]}"
                         f"{' ...' if len(empty) > 5 else ''}); build it again (prolab properties)")
    leaked = sorted(set(held) - set(space.notes.get("unseen", [])))
    if leaked:  # the protocol: unseen classes reach the bank only by assignment, never by clustering
        raise ValueError(f"property space {Path(path).name} was clustered with the descriptions of {leaked}, which "
                         f"this run holds out (unseen = {cfg.unseen!r}); build one without them: prolab properties "
                         f"--dataset {cfg.dataset} --unseen {','.join(held)}")
    return space, path


def name_bank_for(cfg: TrainConfig, class_names: list[str]) -> np.ndarray:
    """(C, d) L2-normalised sentence embeddings of the class names (name_embedding mode), through the
    embedding cache: the 'category space with a text embedder' baseline of the paper."""
    from ..embed import EmbeddingCache, make_embedder

    emb = make_embedder(cfg.name_embedder)
    x = EmbeddingCache(emb.embedder_id).encode(emb, list(class_names), progress=False).astype(np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def build_model(cfg: TrainConfig, class_names: list[str]):
    space, names = None, None
    unseen_ids(cfg, class_names)  # a typo in --unseen fails here, before any weights load
    if cfg.mode == "property":
        space, _ = load_space_for(cfg, class_names)
    elif cfg.mode == "name_embedding":
        names = torch.from_numpy(name_bank_for(cfg, class_names))
    md = ModelDefaults(backbone=cfg.backbone, pretrained=cfg.pretrained, channels=cfg.channels,
                       aux_channels=max(32, cfg.channels // 2), use_aux=cfg.aux_weight > 0,
                       head_init=cfg.head_init, normalize_bank=cfg.normalize_bank)
    model = SegModel(len(class_names), cfg.mode, None if space is None else torch.from_numpy(space.bank),
                     None if space is None else torch.from_numpy(space.signatures.astype(np.float32)),
                     cfg.temperature, cfg.normalize, md, name_bank=names, loss=cfg.loss)
    return model, space
