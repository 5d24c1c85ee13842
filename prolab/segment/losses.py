"""Losses for property-level and category-level supervision. Ignored pixels (255) are excluded from every
mean (the release mapped them to an all-zero target, which dilutes the loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..defaults import CATEGORY_LOSS, PROPERTY_LOSSES
from ..defaults import IGNORE_INDEX as IGNORE

LOSSES = PROPERTY_LOSSES + (CATEGORY_LOSS,)


def signature_index(signatures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse form of multi-hot signatures: (C, M) property indices padded with 0, (C, M) 0/1 weights, and
    the number of properties per class. Signatures have ~5-15 of K properties on, so per-pixel work on the
    active properties is M instead of K."""
    sig = signatures > 0.5
    counts = sig.sum(1)
    m = max(int(counts.max()), 1)
    order = torch.argsort(sig.to(torch.int8), dim=1, descending=True, stable=True)[:, :m]
    weights = (torch.arange(m, device=sig.device)[None, :] < counts[:, None]).to(torch.float32)
    return order * weights.long(), weights, counts


class _CosSigmoidLoss(torch.autograd.Function):
    """1 - cos(sigmoid(z / T), y_c) per pixel with a hand-written backward: the sigmoid is computed once and
    kept, |p| comes from a reduction, and the y_c terms touch only the class's active properties, so the
    dense work is a few passes over the (B, K, H, W) logits instead of autograd's chain of temporaries.

    d/dp_k [p.y / (|p| |y|)] = y_k / (|p| |y|) - (p.y) p_k / (|p|^3 |y|);   dp/dz = p (1 - p) / T.
    """

    @staticmethod
    def forward(ctx, z, idx, w, y_norm, weight, temperature):
        p = torch.sigmoid(z / temperature)
        p_norm = torch.linalg.vector_norm(p, dim=1).clamp_min(1e-8)     # (B, H, W)
        dot = (p.gather(1, idx) * w).sum(1)
        per_pixel = 1 - dot / (p_norm * y_norm)
        ctx.save_for_backward(p, p_norm, dot, idx, w, y_norm, weight)
        ctx.temperature = temperature
        return (per_pixel * weight).sum()

    @staticmethod
    def backward(ctx, grad_out):
        p, p_norm, dot, idx, w, y_norm, weight = ctx.saved_tensors
        c = grad_out * weight                                            # dL/d(per_pixel)
        grad = p * (c * dot / (p_norm.pow(3) * y_norm)).unsqueeze(1)     # from -cos: + (p.y) p_k / (|p|^3 |y|)
        grad.scatter_add_(1, idx, -(c / (p_norm * y_norm)).unsqueeze(1) * w)
        grad.mul_(p).mul_(1 - p).div_(ctx.temperature)
        return grad, None, None, None, None, None


def labelled(labels: torch.Tensor, n_classes: int, ignore_index: int, target: str):
    """(valid mask, number of labelled pixels, labels with ignored pixels set to 0 for indexing); a label
    without a ``target`` row is an error."""
    valid = labels != ignore_index
    n_valid = valid.sum()
    lab = torch.where(valid, labels, torch.zeros_like(labels))
    if n_valid and int(lab.max()) >= n_classes:
        raise ValueError(f"label {int(lab.max())} has no {target} ({n_classes} classes)")
    return valid, n_valid, lab


def property_loss(logits: torch.Tensor, labels: torch.Tensor, signatures: torch.Tensor, temperature: float,
                  kind: str = "cos_sigmoid", ignore_index: int = IGNORE) -> torch.Tensor:
    """Mean over labelled pixels of the per-pixel loss between property logits z (B, K, H, W) and the
    signature y_c of the pixel's class.

    cos_sigmoid: 1 - cos(sigmoid(z/T), y_c)   (ProLab's loss)
    bce:         mean_k BCE(sigmoid(z/T), y_c[k])
    cos:         1 - cos(z, y_c)              (no sigmoid)

    Computed without building y_c per pixel: p . y_c is a sum over the class's few active properties.
    """
    if logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in size; "
                         "upsample the logits to the label size first")
    if kind not in PROPERTY_LOSSES:
        raise ValueError(f"unknown property loss {kind!r}; choose one of cos_sigmoid, bce, cos")
    valid, n_valid, lab = labelled(labels, signatures.shape[0], ignore_index, "signature")
    if n_valid == 0:
        return logits.sum() * 0.0
    idx, w, counts = signature_index(signatures.to(logits.device))
    pix_idx = idx[lab].permute(0, 3, 1, 2)                      # (B, M, H, W)
    pix_w = w.to(logits.dtype)[lab].permute(0, 3, 1, 2)
    if kind == "cos_sigmoid":
        y_norm = counts.to(logits.dtype)[lab].clamp_min(1).sqrt()
        weight = valid.to(logits.dtype) / n_valid
        return _CosSigmoidLoss.apply(logits, pix_idx, pix_w, y_norm, weight, float(temperature))
    z = logits / temperature if kind != "cos" else logits
    if kind == "bce":
        per_pixel = (F.softplus(z).sum(1) - (z.gather(1, pix_idx) * pix_w).sum(1)) / logits.shape[1]
    else:
        v = torch.sigmoid(z) if kind == "cos_sigmoid" else z
        dot = (v.gather(1, pix_idx) * pix_w).sum(1)
        norm = v.pow(2).sum(1).clamp_min(1e-16).sqrt() * counts.to(v.dtype)[lab].clamp_min(1).sqrt()
        per_pixel = 1 - dot / norm
    return (per_pixel * valid).sum() / n_valid


def category_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels."""
    if (labels != ignore_index).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def name_embedding_loss(e: torch.Tensor, labels: torch.Tensor, name_bank: torch.Tensor,
                        ignore_index: int = IGNORE) -> torch.Tensor:
    """Mean over labelled pixels of 1 - cos(e, t_c): the pixel embedding e (B, d, H, W) against the
    L2-normalised sentence embedding t_c (rows of ``name_bank``, C x d) of the pixel's class name."""
    valid, n_valid, lab = labelled(labels, name_bank.shape[0], ignore_index, "class-name embedding")
    if n_valid == 0:
        return e.sum() * 0.0
    # e . t_c without a (B, H, W, d) target: score every class at every pixel (C is small), pick the label's
    cos = torch.einsum("bdhw,cd->bchw", F.normalize(e, dim=1), name_bank.to(e.dtype))
    per_pixel = 1 - cos.gather(1, lab[:, None]).squeeze(1)
    return (per_pixel * valid).sum() / n_valid


def _bilinear_taps(n_out: int, n_in: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source index i0 and weight of the next sample for each output position of a bilinear resize
    (align_corners=False, as F.interpolate with a target size): out = (1 - l) x[i0] + l x[min(i0 + 1, n_in - 1)]."""
    src = ((torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(n_in - 1)
    return i0, src - i0


def upsampled_name_embedding_loss(e: torch.Tensor, labels: torch.Tensor, name_bank: torch.Tensor,
                                  ignore_index: int = IGNORE) -> torch.Tensor:
    """``name_embedding_loss`` of the bilinearly upsampled embedding, from the low-resolution e (B, d, h, w)
    without building the (B, d, H, W) map. Both parts of cos(e', t_c) are exact at low resolution:
    e'.t_c is linear in e, so it is the upsampled (B, C, h, w) score map; |e'|^2 of a blend of four neighbours
    w_a e_a is sum_ab w_a w_b (e_a . e_b), so it needs only the ten neighbour dot products per low-res cell."""
    valid, n_valid, lab = labelled(labels, name_bank.shape[0], ignore_index, "class-name embedding")
    if n_valid == 0:
        return e.sum() * 0.0
    (H, W), (h, w) = labels.shape[1:], e.shape[2:]
    dots = torch.einsum("bdhw,cd->bchw", e, name_bank.to(e.dtype))
    dots = F.interpolate(dots, size=(H, W), mode="bilinear", align_corners=False).gather(1, lab[:, None]).squeeze(1)
    ep = F.pad(e, (0, 1, 0, 1), mode="replicate")           # row/column h, w repeat the last: the border clamp
    a, b, c, d = ep[:, :, :h, :w], ep[:, :, :h, 1:], ep[:, :, 1:, :w], ep[:, :, 1:, 1:]   # the four corners
    pairs = [(a, a), (b, b), (c, c), (d, d), (a, b), (a, c), (a, d), (b, c), (b, d), (c, d)]
    gram = torch.stack([(u * v).sum(1) for u, v in pairs], 1)                           # (B, 10, h, w)
    y0, ly = _bilinear_taps(H, h, e.device)
    x0, lx = _bilinear_taps(W, w, e.device)
    wy, wx = torch.stack([1 - ly, ly]), torch.stack([1 - lx, lx])                       # (2, H), (2, W)
    corner = torch.stack([wy[0][:, None] * wx[0], wy[0][:, None] * wx[1],
                          wy[1][:, None] * wx[0], wy[1][:, None] * wx[1]])              # (4, H, W)
    coef = torch.stack([corner[i] * corner[j] * (1 if i == j else 2)
                        for i, j in [(0, 0), (1, 1), (2, 2), (3, 3), (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]])
    # pick each output pixel's cell with one-hot matrices (a matmul: cheaper backward than advanced indexing)
    ry = F.one_hot(y0, h).to(e.dtype)                                                   # (H, h)
    rx = F.one_hot(x0, w).to(e.dtype)                                                   # (W, w)
    norm2 = (ry @ gram @ rx.T * coef.to(e.dtype)).sum(1)                                # |e'|^2, (B, H, W)
    per_pixel = 1 - dots / norm2.clamp_min(0).sqrt().clamp_min(1e-12)
    return (per_pixel * valid).sum() / n_valid
