"""The fused property loss and full-resolution class scores for CUDA tensors, as Triton kernels: the GPU twin
of ``fused.cpp``. Same arithmetic: each full-resolution pixel's K logits are interpolated from its four
quarter-resolution neighbours (bilinear, align_corners=False), p = sigmoid(z / T), and the loss against the
class's signature (or every class's score) is formed without a (B, K, H, W) tensor. The backward pass
recomputes p and adds dL/dz into the four neighbours with atomics, as PyTorch's own CUDA bilinear backward
does (so, like it, the summation order is not deterministic).

One program handles ``BLOCK_P`` pixels x all K properties (K padded to a power of two). Logits are read
channels-last (B, h, w, K) so a neighbour's K-vector is contiguous. The signatures are dense 0/1 rows
(C, K): a class's row is one contiguous load, which on a GPU costs less than the sparse index lists the CPU
kernel walks.

Checked without a GPU by Triton's interpreter (``TRITON_INTERPRET=1`` runs the same kernels on CPU tensors
with NumPy): ``tests/segment/test_fused_triton.py``. ``available()`` is False where Triton is not installed.
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only torch wheels come without Triton; the reference path still works
    triton = None

KIND_CODE = {"cos_sigmoid": 0, "bce": 1, "cos": 2}
BLOCK_P = 16        # pixels per program: 16 x 256 logits per neighbour stay in registers


def available() -> bool:
    return triton is not None


if triton is not None:
    @triton.jit
    def _taps(o, n_in, scale):
        """PyTorch's source index for bilinear, align_corners=False: (i0, i1, weight of i1)."""
        src = tl.maximum((o.to(tl.float32) + 0.5) * scale - 0.5, 0.0)
        i0 = tl.minimum(src.to(tl.int32), n_in - 1)
        i1 = tl.where(i0 < n_in - 1, i0 + 1, i0)
        return i0, i1, src - i0.to(tl.float32)

    @triton.jit
    def _interpolated(z_ptr, pix, valid, H, W, h, w, K, scale_y, scale_x, BLOCK_K: tl.constexpr):
        """The (BLOCK_P, BLOCK_K) interpolated logits of a block of pixels, and the four neighbours' offsets
        and weights."""
        b = pix // (H * W)
        rem = pix % (H * W)
        y0, y1, ly = _taps(rem // W, h, scale_y)
        x0, x1, lx = _taps(rem % W, w, scale_x)
        k = tl.arange(0, BLOCK_K)
        m2 = valid[:, None] & (k < K)[None, :]
        base = b.to(tl.int64) * h * w
        oa = (base + y0 * w + x0) * K
        ob = (base + y0 * w + x1) * K
        oc = (base + y1 * w + x0) * K
        od = (base + y1 * w + x1) * K
        wa, wb, wc, wd = (1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx
        v = (wa[:, None] * tl.load(z_ptr + oa[:, None] + k[None, :], mask=m2, other=0.0)
             + wb[:, None] * tl.load(z_ptr + ob[:, None] + k[None, :], mask=m2, other=0.0)
             + wc[:, None] * tl.load(z_ptr + oc[:, None] + k[None, :], mask=m2, other=0.0)
             + wd[:, None] * tl.load(z_ptr + od[:, None] + k[None, :], mask=m2, other=0.0))
        return v, m2, k, oa, ob, oc, od, wa, wb, wc, wd

    @triton.jit
    def _loss_kernel(z_ptr, lab_ptr, y_ptr, yn_ptr, out_ptr, grad_ptr, grad_scale, N, H, W, h, w, K,
                     scale_y, scale_x, inv_t, ignore, KIND: tl.constexpr, BACKWARD: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr):
        pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        inside = pix < N
        lab = tl.load(lab_ptr + pix, mask=inside, other=ignore)
        valid = inside & (lab != ignore)
        v, m2, k, oa, ob, oc, od, wa, wb, wc, wd = _interpolated(z_ptr, pix, valid, H, W, h, w, K, scale_y,
                                                                 scale_x, BLOCK_K)
        c = tl.where(valid, lab, 0).to(tl.int64)
        y = tl.load(y_ptr + c[:, None] * K + k[None, :], mask=m2, other=0.0)
        yn = tl.load(yn_ptr + c, mask=valid, other=1.0)
        if KIND == 1:      # BCE with logits v / T, mean over K; d/dv = (sigmoid(v/T) - y) / (T K)
            t = v * inv_t
            softplus = tl.maximum(t, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(t)))
            loss = tl.sum(tl.where(m2, softplus - y * t, 0.0), axis=1) / K
            g = (tl.sigmoid(t) - y) * (inv_t / K)
        else:              # 1 - p.y / (|p| |y|), p = sigmoid(v / T) (KIND 0) or v (KIND 2)
            if KIND == 0:
                p = tl.where(m2, tl.sigmoid(v * inv_t), 0.0)
            else:
                p = v
            ss = tl.sum(p * p, axis=1)
            dot = tl.sum(p * y, axis=1)
            if KIND == 0:   # the reference clamps |p| at 1e-8 (KIND 0) or |p|^2 at 1e-16 (KIND 2)
                clamped = tl.sqrt(ss) < 1e-8
                norm = tl.maximum(tl.sqrt(ss), 1e-8)
            else:
                clamped = ss < 1e-16
                norm = tl.sqrt(tl.maximum(ss, 1e-16))
            loss = 1.0 - dot / (norm * yn)
            a = tl.where(clamped, 0.0, dot / (norm * norm * norm * yn))
            g = a[:, None] * p - (1.0 / (norm * yn))[:, None] * y
            if KIND == 0:
                g = g * p * (1.0 - p) * inv_t
        if BACKWARD:       # the adjoint of the interpolation: each neighbour gets its weight's share
            g = tl.where(m2, g * grad_scale, 0.0)
            tl.atomic_add(grad_ptr + oa[:, None] + k[None, :], wa[:, None] * g, mask=m2)
            tl.atomic_add(grad_ptr + ob[:, None] + k[None, :], wb[:, None] * g, mask=m2)
            tl.atomic_add(grad_ptr + oc[:, None] + k[None, :], wc[:, None] * g, mask=m2)
            tl.atomic_add(grad_ptr + od[:, None] + k[None, :], wd[:, None] * g, mask=m2)
        else:
            tl.store(out_ptr + pix, tl.where(valid, loss, 0.0), mask=inside)

    @triton.jit
    def _scores_kernel(z_ptr, y_ptr, out_ptr, N, C, H, W, h, w, K, scale_y, scale_x, inv_t,
                       BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr):
        """out (B, C, H, W) = cos(sigmoid(z'/T), y_c) with y rows already L2-normalised."""
        pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        inside = pix < N
        v, m2, k, oa, ob, oc, od, wa, wb, wc, wd = _interpolated(z_ptr, pix, inside, H, W, h, w, K, scale_y,
                                                                 scale_x, BLOCK_K)
        p = tl.where(m2, tl.sigmoid(v * inv_t), 0.0)
        p = p / tl.maximum(tl.sqrt(tl.sum(p * p, axis=1)), 1e-12)[:, None]
        b = (pix // (H * W)).to(tl.int64)
        rem = pix % (H * W)
        for c in range(0, C):   # C rows of K: one dot per pixel and class, stored plane by plane
            y = tl.load(y_ptr + c * K + k, mask=k < K, other=0.0)
            s = tl.sum(p * y[None, :], axis=1)
            tl.store(out_ptr + (b * C + c) * H * W + rem, s, mask=inside)


def _dense(signatures: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 rows as the reference reads them (> 0.5), and |y| clamped at 1 (a class without properties)."""
    y = (signatures > 0.5).to(device=device, dtype=torch.float32).contiguous()
    return y, y.sum(1).clamp_min(1).sqrt().contiguous()


def _launch_loss(z, labels, y, yn, temperature, kind, ignore_index, backward, grad_scale=0.0):
    B, h, w, K = z.shape
    H, W = labels.shape[1:]
    N = B * H * W
    out = torch.zeros(N, device=z.device, dtype=torch.float32)
    grad = torch.zeros_like(z) if backward else out
    _loss_kernel[(triton.cdiv(N, BLOCK_P),)](
        z, labels, y, yn, out, grad, float(grad_scale), N, H, W, h, w, K, float(h) / H, float(w) / W,
        1.0 / float(temperature), int(ignore_index), KIND=KIND_CODE[kind], BACKWARD=backward, BLOCK_P=BLOCK_P,
        BLOCK_K=triton.next_power_of_2(K))
    return grad if backward else out


class TritonPropertyLoss(torch.autograd.Function):
    """Mean over labelled pixels of the property loss of the upsampled logits, from z_low (B, K, h, w)."""

    @staticmethod
    def forward(ctx, z_low, labels, signatures, temperature, kind, ignore_index, n_valid):
        z = z_low.detach().permute(0, 2, 3, 1).contiguous().float()
        lab = labels.contiguous().long()
        y, yn = _dense(signatures, z.device)
        per_pixel = _launch_loss(z, lab, y, yn, temperature, kind, ignore_index, backward=False)
        ctx.save_for_backward(z, lab, y, yn)
        ctx.args = (temperature, kind, ignore_index, n_valid, z_low.dtype)
        return (per_pixel.sum() / n_valid).to(z_low.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        z, lab, y, yn = ctx.saved_tensors
        temperature, kind, ignore_index, n_valid, dtype = ctx.args
        g = _launch_loss(z, lab, y, yn, temperature, kind, ignore_index, backward=True,
                         grad_scale=float(grad_out) / n_valid)
        return g.permute(0, 3, 1, 2).to(dtype), None, None, None, None, None, None


def full_resolution_scores(z_low: torch.Tensor, size: tuple[int, int], signatures: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """(B, C, H, W) cos(sigmoid(z'/T), y_c) with z' the upsampled logits, without the (B, K, H, W) map."""
    z = z_low.detach().permute(0, 2, 3, 1).contiguous().float()
    B, h, w, K = z.shape
    H, W = int(size[0]), int(size[1])
    y = signatures.to(device=z.device, dtype=torch.float32)
    y = (y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)).contiguous()   # as F.normalize
    C = y.shape[0]
    out = torch.empty(B, C, H, W, device=z.device, dtype=torch.float32)
    N = B * H * W
    _scores_kernel[(triton.cdiv(N, BLOCK_P),)](z, y, out, N, C, H, W, h, w, K, float(h) / H, float(w) / W,
                                               1.0 / float(temperature), BLOCK_P=BLOCK_P,
                                               BLOCK_K=triton.next_power_of_2(K))
    return out
