"""Explanations of a property-mode model's predictions, read off the cosine score itself.

A pixel's class score is s_c = cos(p, y_c) = sum_k p_k y_ck / (|p| |y_c|), with activations p = sigmoid(z / T)
and the class signature y_c (0/1). So property k adds exactly c_ck = p_k y_ck / (|p| |y_c|) to class c's score
and the c_ck of a class sum to its score: no attribution method is needed, the model's own arithmetic is
the explanation. What it shows:

- ``property_maps``: where chosen properties fire (p_k over the image);
- ``explain_pixel`` / ``explain_region``: the properties behind the predicted class, and those that separate
  it from the runner-up (c_k(predicted) - c_k(runner-up); the signs sum to the score gap);
- ``why_not``: the same against a class of the user's choice, with the properties that class needs but does
  not see, and the active ones it lacks.

Scores are computed at the input resolution (logits upsampled bilinearly, then sigmoid and cosine), as
``SegModel.predict_scores(..., score_resolution="full")`` does. The default ``"feature"`` resolution scores at
1/4 size and upsamples the scores, which can name another class at a few pixels on class boundaries.

Images are normalised float tensors (3, H, W) or (1, 3, H, W), as ``datasets.transforms.to_tensor`` makes
them, or uint8 (H, W, 3) arrays (normalised here).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

_CHUNK = 32  # properties upsampled at once: K full-size maps of a large image would not fit comfortably


# --- the result -----------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    """The predicted class against a rival class at one pixel or region (what the two explanations share)."""
    where: str                     # "pixel (row, col)" or "region of n pixels"
    predicted: str
    rival: str
    scores: dict[str, float]       # cosine score of every class (before softmax)
    activations: np.ndarray        # (K,) p at the pixel, or averaged over the region
    contributions: np.ndarray      # (C, K): c_ck; row c sums to scores[class c]
    class_names: list[str]
    property_names: list[str]
    separating: pd.DataFrame       # properties by |c_k(predicted) - c_k(rival)|, see _separating

    @property
    def gap(self) -> float:
        """Score of the predicted class minus the rival's: the sum of the ``difference`` column (all rows)."""
        return self.scores[self.predicted] - self.scores[self.rival]

    def contribution(self, class_name: str) -> np.ndarray:
        """(K,) contributions of every property to ``class_name``'s score."""
        return self.contributions[self.class_names.index(class_name)]


@dataclass
class Explanation(Comparison):
    """``rival`` is the runner-up (second-highest score). ``supporting``: the predicted class's properties, by
    contribution (property, index, activation, contribution)."""
    supporting: pd.DataFrame

    @property
    def runner_up(self) -> str:
        return self.rival

    def summary(self) -> str:
        lines = [f"{self.where}: {self.predicted} ({self.scores[self.predicted]:.3f}) over {self.rival} "
                 f"({self.scores[self.rival]:.3f})", "supported by:"]
        lines += [f"  {r.contribution:+.3f}  p={r.activation:.2f}  {r.property}" for r in self.supporting.itertuples()]
        lines.append("separating:")
        lines += [f"  {r.difference:+.3f}  for {r.favours}: {r.property}" for r in self.separating.itertuples()]
        return "\n".join(lines)


@dataclass
class WhyNot(Comparison):
    """``rival`` is the class asked about. ``missing``: properties it has (y = 1) that are inactive here
    (p < threshold), lowest first. ``lacking``: active properties (p >= threshold) it does not have; they
    lengthen |p| without adding to its score. ``in_predicted`` says whether the predicted class has them."""
    missing: pd.DataFrame
    lacking: pd.DataFrame
    threshold: float

    @property
    def other(self) -> str:
        return self.rival

    def summary(self) -> str:
        lines = [f"{self.where}: why not {self.rival}? {self.predicted} scores {self.scores[self.predicted]:.3f}, "
                 f"{self.rival} {self.scores[self.rival]:.3f} (gap {self.gap:.3f})",
                 f"{self.rival} would need (inactive here):"]
        lines += [f"  p={r.activation:.2f}  {r.property}" for r in self.missing.itertuples()]
        lines.append(f"active here, but {self.rival} lacks:")
        lines += [f"  p={r.activation:.2f}  {r.property}" for r in self.lacking.itertuples()]
        return "\n".join(lines)


# --- public functions -----------------------------------------------------------------------------------------

def property_maps(model, image, names_or_indices, space) -> tuple[np.ndarray, list[str]]:
    """Activation maps p_k (n, H, W) at input size for the chosen properties, and their full names.

    Properties are chosen by index or by name: an exact name, or a case-insensitive substring that only one
    property name contains (see ``find_property``)."""
    _check_model(model, space)
    if isinstance(names_or_indices, (str, int, np.integer)):
        names_or_indices = [names_or_indices]
    ks = [find_property(space, q) for q in names_or_indices]
    x = _as_batch(image, model)
    maps = _activations(model, x, ks, lambda p: p)
    return maps.cpu().numpy(), [space.property_names[k] for k in ks]


def explain_pixel(model, space, image, pixel: tuple[int, int], top: int | None = 8) -> Explanation:
    """Why ``pixel`` = (row, col) gets its class: the decomposition of its cosine scores. ``top`` limits the
    tables (None: every row)."""
    _check_model(model, space)
    x = _as_batch(image, model)
    r, c = _check_pixel(pixel, x.shape[2:])
    p = _activations(model, x, range(space.n_properties), lambda m: m[:, r, c])
    return _explain(model, space, p, f"pixel ({r}, {c})", top)


def explain_region(model, space, image, mask, top: int | None = 8) -> Explanation:
    """The same for a region (bool mask (H, W), e.g. a predicted segment). p is averaged over the mask
    *first* and the mean decomposed, so the contributions sum exactly to cos(mean p, y_c): the region's
    class is the one its mean activation points to, which can differ from the majority of its pixels'
    classes when the region is mixed."""
    _check_model(model, space)
    x = _as_batch(image, model)
    m = _check_mask(mask, x.shape[2:], x.device)
    p = _activations(model, x, range(space.n_properties), lambda a: a[:, m].mean(1))
    return _explain(model, space, p, f"region of {int(m.sum())} pixels", top)


def why_not(model, space, image, where, other_class: str | int, top: int | None = 8,
            threshold: float = 0.5) -> WhyNot:
    """Why not ``other_class`` (name or index) at ``where``: a (row, col) pixel or a bool mask (averaged as in
    ``explain_region``). A property counts as inactive below ``threshold`` (p = 0.5 is logit 0)."""
    _check_model(model, space)
    x = _as_batch(image, model)
    other = find_class(space, other_class)
    if isinstance(where, tuple) or (isinstance(where, (list, np.ndarray, torch.Tensor)) and np.ndim(where) == 1):
        r, c = _check_pixel(tuple(where), x.shape[2:])
        p = _activations(model, x, range(space.n_properties), lambda a: a[:, r, c])
        label = f"pixel ({r}, {c})"
    else:
        m = _check_mask(where, x.shape[2:], x.device)
        p = _activations(model, x, range(space.n_properties), lambda a: a[:, m].mean(1))
        label = f"region of {int(m.sum())} pixels"
    p, contrib, scores = _decompose(p, _signatures(space, model))
    pred = int(np.argmax(scores))
    sig = np.asarray(space.signatures) > 0
    names = space.property_names

    def rows(ks, *cols):
        data = {"property": [names[k] for k in ks], "index": list(ks), "activation": p[ks],
                "in_predicted": sig[pred, ks]}
        data.update({name: contrib[cls, ks] for name, cls in cols})
        return pd.DataFrame(data)

    missing = np.flatnonzero(sig[other] & (p < threshold))
    missing = missing[np.argsort(p[missing], kind="stable")][:top]
    lacking = np.flatnonzero(~sig[other] & (p >= threshold))
    lacking = lacking[np.argsort(-p[lacking], kind="stable")][:top]
    return WhyNot(where=label, predicted=space.class_names[pred], rival=space.class_names[other],
                  scores=dict(zip(space.class_names, scores.tolist())), activations=p, contributions=contrib,
                  class_names=list(space.class_names), property_names=list(names),
                  separating=_separating(space, p, contrib, pred, other, top),
                  missing=rows(missing, ("contribution_other", other)),
                  lacking=rows(lacking, ("contribution_predicted", pred)), threshold=threshold)


def showcase_pixel(run_name: str, class_name: str, split: str = "val") -> tuple[int, tuple[int, int], bool]:
    """The pixel a notebook shows for ``class_name``: ``evaluate.score.find_example``'s rule (a correctly
    predicted pixel, the deepest one of the first image that has one), or, for a run that predicts the class
    nowhere (a very short one), a missed pixel by the same rule. (image index, (row, col), predicted correctly?)"""
    from ..evaluate.score import find_example

    try:
        return (*find_example(run_name, class_name, split), True)
    except ValueError:
        return (*find_example(run_name, class_name, split, correct=False), False)


def find_property(space, query: str | int) -> int:
    """Index of a property: an index, an exact name, or a case-insensitive substring of exactly one name."""
    names = space.property_names
    if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
        if not 0 <= query < len(names):
            raise ValueError(f"property index {query} is out of range: the space has {len(names)} properties "
                             f"(0..{len(names) - 1})")
        return int(query)
    if not isinstance(query, str):
        raise ValueError(f"property {query!r}: give a property name (str) or index (int)")
    exact = [k for k, n in enumerate(names) if n == query]
    hits = exact or [k for k, n in enumerate(names) if query.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ValueError(f"no property name contains {query!r} (case-insensitive); "
                         f"{len(names)} properties, e.g. {names[:5]}")
    shown = "; ".join(f"{k}: {names[k]!r}" for k in hits[:15]) + (" ..." if len(hits) > 15 else "")
    raise ValueError(f"property {query!r} is ambiguous: {len(hits)} names match ({shown}); "
                     "give more of the name or the index")


def find_class(space, query: str | int) -> int:
    """Index of a class: an index or a class name (exact, else case-insensitive)."""
    names = space.class_names
    if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
        if not 0 <= query < len(names):
            raise ValueError(f"class index {query} is out of range: {len(names)} classes (0..{len(names) - 1})")
        return int(query)
    if isinstance(query, str):
        if query in names:
            return names.index(query)
        folded = [i for i, n in enumerate(names) if n.lower() == query.lower()]
        if len(folded) == 1:
            return folded[0]
    raise ValueError(f"unknown class {query!r}; the classes are {names}")


# --- internals ------------------------------------------------------------------------------------------------

def _check_model(model, space) -> None:
    if getattr(model, "mode", None) != "property":
        raise ValueError(f"explanations need a property-mode run; this model is {getattr(model, 'mode', '?')!r} "
                         "mode (its class logits have no properties to decompose)")
    k, c = space.n_properties, space.n_classes
    # the model's space, or one that extends it with classes assigned to the same bank (properties.assign)
    m = model.signatures.shape[0]
    if model.signatures.shape[1] != k or c < m or not np.array_equal(
            model.signatures.cpu().numpy() > 0.5, np.asarray(space.signatures)[:m] > 0) or not model.has_bank(
            np.asarray(space.bank)):
        raise ValueError(f"the property space ({c} classes x {k} properties) is not the one this model was "
                         f"trained with (signatures {tuple(model.signatures.shape)} differ), nor that space with "
                         "classes added by properties.assign.add_classes; load it with "
                         "prolab.train.load_space_for(cfg, class_names)")
    if c < 2:
        raise ValueError("explanations compare classes: the model has fewer than two")


def _signatures(space, model) -> torch.Tensor:
    """The space's signatures (the model's, plus any classes added to its bank) as a float tensor."""
    return torch.as_tensor(np.asarray(space.signatures) > 0, dtype=torch.float32, device=model.signatures.device)


def class_score_maps(model, space, image) -> tuple[np.ndarray, list[str]]:
    """(C', H, W) cosine scores at input size for every class of ``space``: the model's classes and any added
    with ``properties.assign.add_classes`` (a class never in the label set, scored with no retraining)."""
    _check_model(model, space)
    x = _as_batch(image, model)
    with _evaluating(model), torch.no_grad():
        z = F.interpolate(model(x)["logits"], size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    from ..segment.model import property_class_scores

    return property_class_scores(z, _signatures(space, model), model.temperature)[0].cpu().numpy(), \
        list(space.class_names)


def _as_batch(image, model) -> torch.Tensor:
    """(1, 3, H, W) float on the model's device."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        from ..datasets.transforms import to_tensor

        image = to_tensor(image)
    if not torch.is_tensor(image) or image.ndim not in (3, 4) or image.shape[-3] != 3 or (
            image.ndim == 4 and image.shape[0] != 1):
        shape = tuple(getattr(image, "shape", ()))
        raise ValueError(f"image of type {type(image).__name__}, shape {shape}: give one normalised float tensor "
                         "(3, H, W) or (1, 3, H, W), or a uint8 (H, W, 3) array")
    x = image if image.ndim == 4 else image[None]
    return x.float().to(model.signatures.device)


def _check_pixel(pixel, size) -> tuple[int, int]:
    h, w = size
    ok = len(pixel) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pixel)
    if not ok:
        raise ValueError(f"pixel {pixel!r}: give (row, col) integers")
    r, c = int(pixel[0]), int(pixel[1])
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"pixel (row {r}, col {c}) is outside the {h} x {w} image")
    return r, c


def _check_mask(mask, size, device) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask.cpu() if torch.is_tensor(mask) else mask))
    if tuple(m.shape) != tuple(size):
        raise ValueError(f"mask of shape {tuple(m.shape)} does not match the image's {tuple(size)}")
    if m.dtype != torch.bool:
        if not torch.isin(m, torch.tensor([0, 1], dtype=m.dtype)).all():
            raise ValueError("mask must be boolean (or 0/1)")
        m = m != 0
    if not m.any():
        raise ValueError("mask is empty: it selects no pixel")
    return m.to(device)


@contextmanager
def _evaluating(model):
    """Eval mode (no dropout, running BatchNorm statistics) for the call, the caller's mode restored after."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def _activations(model, x, ks, reduce) -> torch.Tensor:
    """reduce(p) for the properties ``ks`` at input size, a chunk of properties at a time (bilinear upsampling
    is per channel, so chunks give the same values as upsampling all K at once)."""
    with _evaluating(model):
        z = model(x)["logits"][0]
    ks = list(ks)
    out = []
    for i in range(0, len(ks), _CHUNK):
        up = F.interpolate(z[ks[i:i + _CHUNK]][None], size=tuple(x.shape[2:]), mode="bilinear",
                           align_corners=False)[0]
        out.append(reduce(torch.sigmoid(up / model.temperature)))
    return torch.cat(out)


def _decompose(p: torch.Tensor, signatures: torch.Tensor):
    """p (K,) -> (p, contributions (C, K), scores (C,)) in float64; eps as F.normalize's."""
    p = p.double().cpu().numpy()
    y = signatures.double().cpu().numpy()
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    contrib = (p / max(np.linalg.norm(p), 1e-12))[None] * y
    return p, contrib, contrib.sum(1)


def _explain(model, space, p, where: str, top) -> Explanation:
    p, contrib, scores = _decompose(p, _signatures(space, model))
    pred, runner = (int(i) for i in np.argsort(-scores, kind="stable")[:2])
    names = space.property_names
    has = np.flatnonzero(np.asarray(space.signatures)[pred] > 0)
    has = has[np.argsort(-contrib[pred, has], kind="stable")][:top]
    supporting = pd.DataFrame({"property": [names[k] for k in has], "index": has, "activation": p[has],
                               "contribution": contrib[pred, has]})
    return Explanation(where=where, predicted=space.class_names[pred], rival=space.class_names[runner],
                       scores=dict(zip(space.class_names, scores.tolist())), activations=p, contributions=contrib,
                       class_names=list(space.class_names), property_names=list(names),
                       separating=_separating(space, p, contrib, pred, runner, top), supporting=supporting)


def _separating(space, p, contrib, a: int, b: int, top) -> pd.DataFrame:
    """Properties by |c_k(a) - c_k(b)|, largest first; those neither class has (difference 0) are left out.
    ``favours`` names the class a property speaks for (positive difference: a)."""
    diff = contrib[a] - contrib[b]
    ks = np.flatnonzero(diff != 0)
    ks = ks[np.argsort(-np.abs(diff[ks]), kind="stable")][:top]
    return pd.DataFrame({"property": [space.property_names[k] for k in ks], "index": ks, "activation": p[ks],
                         "contribution_predicted": contrib[a, ks], "contribution_rival": contrib[b, ks],
                         "difference": diff[ks],
                         "favours": [space.class_names[a] if d > 0 else space.class_names[b] for d in diff[ks]]})
