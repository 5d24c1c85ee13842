"""Property learnability: how well a trained property model predicts each property, and pruning the worst.

The issue's loop: measure per-property average precision (AP) of the activation against its target on
validation pixels, list the least learnable properties, drop them from the bank and signatures, retrain on the
pruned space and compare::

    model, cfg, class_names = load_trained(run)
    space, path = load_space_for(cfg, class_names)
    table = property_ap(model, eval_split(cfg, "val"), space)
    worst = least_learnable(table, 10)
    out = save_pruned(drop_properties(space, worst), path)   # then: prolab train --property_space <out> ...

Learnability is judged by *skill* = (AP - prevalence) / (1 - prevalence): 0 for a random scorer (whose AP is
the prevalence), 1 for a perfect one. Raw AP favours common properties (a property on half the pixels gets
AP 0.5 for free); AP - prevalence caps common properties' headroom at 1 - prevalence; AP / prevalence is
unbounded for rare properties. Skill puts every property on the same 0..1 scale of "how far from chance".
"""
from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import paths
from ..defaults import IGNORE_INDEX
from ..files import environment_info, stable_hash, utc_now
from ..progress import tqdm
from ..properties.collisions import find_collisions, property_usage
from ..properties.space import PropertySpace, tensor_path


# --- measuring ----------------------------------------------------------------------------------------------

@torch.no_grad()
def property_ap(model, dataset, names: PropertySpace | list[str] | None = None, limit: int | None = None,
                max_pixels_per_image: int | None = 1024, seed: int = 0, device: str = "cpu",
                progress: bool = True) -> pd.DataFrame:
    """Per-property AP of the activation p_k = sigmoid(z_k / T) against the target y_{label, k} on labelled
    pixels (label != 255) of ``dataset`` (items: normalised image (3, H, W), label (H, W)).

    Logits are upsampled bilinearly to the label's size (align_corners=False), as at evaluation. AP is computed
    on z / T rather than on p: sigmoid is monotone, so the ranking -- and AP -- are the same, but at T = 0.04
    float32 sigmoid saturates to exactly 0 or 1 and would turn distinct scores into ties.

    Memory: all sampled pixels' K scores are kept (n_images x max_pixels_per_image x K x 4 bytes; ADE20K val,
    K = 256: about 2 GB at the default). Each image contributes at most ``max_pixels_per_image`` labelled pixels,
    drawn without replacement by a generator seeded with (seed, image index): the same pixels whatever ``limit``
    or order; ``None`` keeps every pixel.

    Columns: property, name, AP, skill ((AP - prevalence) / (1 - prevalence), see the module docstring),
    positives (sampled pixels whose class has the property), prevalence (positives / sampled pixels: the AP of
    a random scorer), classes (how many classes have the property). A property without a positive pixel in the
    evaluated data has AP NaN: it is reported, not dropped, and cannot be judged.
    """
    from sklearn.metrics import average_precision_score

    mode = getattr(model, "mode", "property")
    if mode != "property":
        raise ValueError(f"property_ap needs a property-mode model; a {mode!r} model has no properties")
    sig = model.signatures.detach().cpu().numpy() > 0.5                     # (C, K)
    n_classes, k = sig.shape
    prop_names = _names(names, k)
    model.eval().to(device)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    scores, labels = [], []
    for i in tqdm(range(n), desc="property AP", disable=not progress):
        image, label = dataset[i]
        label = torch.as_tensor(label)
        lab = label.numpy().reshape(-1).astype(np.int64)
        idx = np.flatnonzero(lab != IGNORE_INDEX)
        bad = lab[idx][lab[idx] >= n_classes]
        if bad.size:
            raise ValueError(f"image {i}: label value {int(bad[0])} is neither a class (0..{n_classes - 1}) "
                             f"nor ignore ({IGNORE_INDEX})")
        if max_pixels_per_image is not None and idx.size > max_pixels_per_image:
            rng = np.random.default_rng([seed, i])
            idx = np.sort(rng.choice(idx, max_pixels_per_image, replace=False))
        z = model(image[None].to(device))["logits"]
        z = F.interpolate(z, size=tuple(label.shape[-2:]), mode="bilinear", align_corners=False)[0]
        z = (z.reshape(k, -1)[:, torch.from_numpy(idx).to(z.device)] / model.temperature).T   # (n_pix, K)
        scores.append(z.float().cpu().numpy())
        labels.append(lab[idx])
    scores = np.concatenate(scores) if scores else np.zeros((0, k), np.float32)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    target = sig[labels]                                                       # (n_pix, K)
    positives = target.sum(0)
    ap = np.full(k, np.nan)
    for j in np.flatnonzero(positives > 0):
        ap[j] = average_precision_score(target[:, j], scores[:, j])
    prevalence = positives / len(labels) if len(labels) else np.full(k, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        skill = np.where(prevalence < 1, (ap - prevalence) / (1 - prevalence), np.nan)
    return pd.DataFrame({"property": np.arange(k), "name": prop_names, "AP": ap, "skill": skill,
                         "positives": positives.astype(np.int64), "prevalence": prevalence,
                         "classes": sig.sum(0).astype(np.int64)})


def least_learnable(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` properties with the lowest skill, (AP - prevalence) / (1 - prevalence), worst first.

    Properties with AP NaN (no positive pixel) or skill NaN (every pixel positive) cannot be judged and are
    never listed; ties go to the lower AP, then the lower index."""
    t = table.copy()
    if "skill" not in t:
        with np.errstate(invalid="ignore", divide="ignore"):
            t["skill"] = (t["AP"] - t["prevalence"]) / (1 - t["prevalence"])
    t = t[t["AP"].notna() & t["skill"].notna() & np.isfinite(t["skill"])]
    return t.sort_values(["skill", "AP", "property"], kind="stable").head(int(n)).reset_index(drop=True)


# --- pruning ------------------------------------------------------------------------------------------------

def drop_properties(space: PropertySpace, properties, collisions: str = "warn") -> PropertySpace:
    """A new space without ``properties`` (indices, names, or a table with a ``property`` column such as
    ``least_learnable``'s): their bank rows and signature columns are removed, the rest renumbered.

    Descriptions of dropped properties are *kept*, marked unassigned (desc_property -1, as in imported spaces):
    each class keeps its full description list (what ``to_release`` writes and what names the class), only the
    link to a removed property goes. ``source["pruned_from"]`` records the parent space (content hash, K, the
    names dropped); ``notes["dropped_properties"]`` lists them with the classes that lost them.

    A class that had properties and would be left with none is refused (ValueError naming it): its signature
    would be all zero, so it could never be predicted. Classes whose signatures become identical are a warning
    listing them (``collisions="error"`` makes it an error): built spaces may already hold collisions
    (`prolab properties` without --repair), so the choice stays with the caller; only new collisions are named.
    """
    if collisions not in ("warn", "error"):
        raise ValueError(f"collisions must be 'warn' or 'error', not {collisions!r}")
    drop = _resolve(space, properties)
    keep = np.setdiff1d(np.arange(space.n_properties), drop)
    if keep.size == 0:
        raise ValueError("cannot drop every property of the space")
    sig = space.signatures[:, keep]
    had = space.signatures.sum(1) > 0
    emptied = [space.class_names[c] for c in np.flatnonzero(had & (sig.sum(1) == 0))]
    if emptied:
        raise ValueError(f"dropping {[space.property_names[j] for j in drop]} leaves classes {emptied} without any "
                         "property (an all-zero signature can never be predicted); drop fewer properties")
    before = {tuple(g) for g in find_collisions(space.signatures)}
    new = [[space.class_names[c] for c in g] for g in find_collisions(sig) if tuple(g) not in before]
    if new:
        msg = f"after dropping {len(drop)} properties these classes share one signature: {new}"
        if collisions == "error":
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=2)
    remap = -np.ones(space.n_properties + 1, dtype=np.int64)          # index -1 (unassigned) stays -1
    remap[keep] = np.arange(keep.size)
    dropped = [{"index": int(j), "name": space.property_names[j],
                "classes": [space.class_names[c] for c in np.flatnonzero(space.signatures[:, j])]} for j in drop]
    parent = {"content_hash": space.content_hash(), "n_properties": space.n_properties,
              "dropped": [d["name"] for d in dropped]}
    if "pruned_from" in space.source:
        parent["previous"] = space.source["pruned_from"]
    pruned = replace(space, bank=space.bank[keep].copy(), signatures=sig.copy(),
                     descriptions=list(space.descriptions), desc_class=space.desc_class.copy(),
                     desc_property=remap[space.desc_property],
                     property_names=[space.property_names[j] for j in keep],
                     source={**space.source, "pruned_from": parent},
                     notes={**space.notes, "dropped_properties": dropped,
                            "collisions_after": [[space.class_names[c] for c in g] for g in find_collisions(sig)]})
    pruned.notes["usage"] = property_usage(pruned)
    return pruned.check()


def pruned_space_path(source: str | Path, pruned: PropertySpace, root: str | Path | None = None) -> Path:
    """Where a pruned space goes, named by ``paths.property_space_path`` like its source, with the method tag
    extended: ``...__kmeans-s0-k256`` -> ``...__kmeans-s0-drop10-<hash>-k246``. The hash covers the parent's
    content and the dropped names, so two prunings never share a file and the same pruning reuses it.
    ``root`` defaults to the tree holding the source (the file lands beside it)."""
    info = pruned.source.get("pruned_from")
    if not info:
        raise ValueError("this space was not made by drop_properties (its source records no pruned_from)")
    src = tensor_path(paths.resolve(source))
    m = re.fullmatch(r"(.+)__(.+)__(.+?)(?:-k\d+)?", src.stem)
    desc, emb, method = m.groups() if m else (src.stem, pruned.embedder_id or "embedder", "space")
    tag = f"{method}-drop{len(info['dropped'])}-{stable_hash([info['content_hash'], info['dropped']], 6)}"
    base = paths.resolve(root) if root is not None else src.parent.parent
    return paths.property_space_path(pruned.dataset or src.parent.name, desc, emb, tag, pruned.n_properties,
                                     root=base)


def save_pruned(pruned: PropertySpace, source: str | Path, root: str | Path | None = None) -> Path:
    """Save a space from ``drop_properties`` at ``pruned_space_path`` (its parent's file name recorded), ready
    for ``prolab train --property_space <returned path>``."""
    path = pruned_space_path(source, pruned, root)
    info = {**pruned.source["pruned_from"], "file": tensor_path(Path(source)).name}
    out = replace(pruned, source={**pruned.source, "pruned_from": info})
    return out.save(path, extra_meta={"created": utc_now(), "environment": environment_info()})


# --- helpers ------------------------------------------------------------------------------------------------

def _names(names, k: int) -> list[str]:
    if names is None:
        return [f"property {j}" for j in range(k)]
    got = list(names.property_names if isinstance(names, PropertySpace) else names)
    if len(got) != k:
        raise ValueError(f"{len(got)} property names for a model with {k} properties (another property space?)")
    return got


def _resolve(space: PropertySpace, properties) -> list[int]:
    """Sorted unique property indices from indices, names, or a table's ``property`` column."""
    if isinstance(properties, pd.DataFrame):
        properties = properties["property"].tolist()
    elif isinstance(properties, (str, int, np.integer)):
        properties = [properties]
    out = set()
    for p in properties:
        if isinstance(p, str):
            hits = [j for j, name in enumerate(space.property_names) if name == p]
            if len(hits) != 1:
                raise ValueError(f"property name {p!r} matches {len(hits)} properties; pass its index instead")
            out.add(hits[0])
        else:
            j = int(p)
            if not 0 <= j < space.n_properties:
                raise ValueError(f"property index {j} is not in 0..{space.n_properties - 1}")
            out.add(j)
    return sorted(out)


@torch.no_grad()
def initial_saturation(cfg, inits=("release", "pytorch"), n_images: int = 4) -> pd.DataFrame:
    """How saturated a property model's sigmoids are before any training, for each initialisation of the layer
    that makes the pixel embedding (``head_init``): the first training batch of ``cfg`` (its first ``n_images``
    augmented crops) through a fresh model, main and auxiliary head. Columns as the training log's
    ``sat_std`` / ``sat_frac`` / ``sat_grad`` (std of z/T, share of |z/T| > 4, mean p(1 - p))."""
    from ..datasets.transforms import AugmentDefaults, TrainTransform
    from ..train.data import Batches, open_split
    from ..train.build import build_model
    from ..train.loop import saturation

    ds = open_split(cfg, "train")
    aug = TrainTransform(AugmentDefaults(scale=tuple(cfg.scale), crop_size=(cfg.crop_size, cfg.crop_size)))
    batches = Batches(ds, aug, cfg.batch_size, cfg.seed)
    images = torch.stack([batches[(0, j)][0] for j in range(min(n_images, cfg.batch_size))])
    rows = []
    for init in inits:
        torch.manual_seed(cfg.seed)
        model, _ = build_model(replace(cfg, head_init=init, mode="property"), ds.class_names)
        model.train()
        sat = saturation(model(images), cfg.temperature)
        rows.append({"head_init": init, **sat})
    return pd.DataFrame(rows)
