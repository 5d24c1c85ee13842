"""The property loss computed from the quarter-resolution logits in one fused pass (CPU): bilinear
upsampling, sigmoid(z/T) and the loss against the class signature per labelled pixel, forward and backward,
without a (B, K, H, W) tensor. ``losses.property_loss`` on upsampled logits stays the reference; the tests
compare values and gradients.

The kernel is C++ (``fused_loss.cpp``), compiled once at first use with torch's cpp_extension (g++ and
ninja; about 40 s on 2 cores) into ``paths.extensions_dir()`` (``$PROLAB_CACHE/torch_extensions/``). Where it cannot be built,
or for CUDA tensors, ``upsampled_property_loss`` falls back to the reference path (upsample, then the loss)
and says so once. ``PROLAB_FUSED_LOSS=0`` turns the fused path off.
"""
from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import paths
from ..defaults import IGNORE_INDEX as IGNORE
from ..defaults import PROPERTY_LOSSES

SOURCE = Path(__file__).with_name("fused_loss.cpp")
KIND_CODE = {"cos_sigmoid": 0, "bce": 1, "cos": 2}
_ext = None
_failed: str | None = None


# fast-math lets GCC call glibc's vector expf in the sigmoid loops (about 3x faster); inputs are finite logits
CFLAGS = ("-O3", "-ffast-math", "-march=native")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def enabled() -> bool:
    return os.environ.get("PROLAB_FUSED_LOSS", "1") != "0"


def extension():
    """The compiled kernel (built on first call, then loaded from the cache); None where it cannot be built."""
    global _ext, _failed
    if _ext is not None or _failed is not None:
        return _ext
    src = SOURCE.read_text(encoding="utf-8")
    # -march=native: the build is for this CPU, so its flags are part of the cache key (a shared cache on
    # another machine builds its own)
    tag = hashlib.sha256("|".join([src, " ".join(CFLAGS), torch.__version__, sys.version, _cpu_flags()]).encode()
                         ).hexdigest()[:12]
    build = paths.extensions_dir() / f"prolab_fused_loss_{tag}"
    build.mkdir(parents=True, exist_ok=True)
    # torch looks for ninja on PATH; the venv's bin (pip's ninja) may not be on it
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    try:
        import logging

        # its import warns that no CUDA runtime exists: true, and irrelevant to a CPU kernel
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        from torch.utils.cpp_extension import load

        from ..progress import tqdm

        with tqdm(total=1, desc="fused property loss: compiling once (cached)", disable=(build / "done").exists()) as bar:
            _ext = load(name=f"prolab_fused_loss_{tag}", sources=[str(SOURCE)], build_directory=str(build),
                        extra_cflags=list(CFLAGS), verbose=False)
            bar.update()
        (build / "done").touch()
    except Exception as e:  # no compiler, no ninja, a failed build: the reference path still works
        _failed = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        warnings.warn(f"fused property loss unavailable ({_failed}); using upsample + loss instead", stacklevel=2)
    return _ext


class _FusedPropertyLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_low, labels, idx, wts, y_norm, temperature, kind, n_valid):
        ext = extension()
        z = z_low.detach().permute(0, 2, 3, 1).contiguous().float()        # channels-last (B, h, w, K)
        lab = labels.contiguous().long()
        total = ext.forward(z, lab, idx, wts, y_norm, float(temperature), KIND_CODE[kind], IGNORE).sum()
        ctx.save_for_backward(z, lab, idx, wts, y_norm)
        ctx.args = (float(temperature), KIND_CODE[kind], n_valid, z_low.dtype)
        return (total / n_valid).to(z_low.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        z, lab, idx, wts, y_norm = ctx.saved_tensors
        temperature, kind, n_valid, dtype = ctx.args
        g = extension().backward(z, lab, idx, wts, y_norm, temperature, kind, IGNORE,
                                 float(grad_out) / n_valid)
        return g.permute(0, 3, 1, 2).to(dtype), None, None, None, None, None, None, None


def upsampled_property_loss(z_low: torch.Tensor, labels: torch.Tensor, signatures: torch.Tensor,
                            temperature: float, kind: str = "cos_sigmoid", ignore_index: int = IGNORE,
                            fused: bool | None = None) -> torch.Tensor:
    """``property_loss`` of the logits bilinearly upsampled to the label size, from the low-resolution logits
    z (B, K, h, w). Fused (no full-resolution K-channel tensor) on CPU when the kernel is available;
    otherwise upsample, then ``property_loss``."""
    from .losses import _labelled, property_loss, signature_index

    if kind not in PROPERTY_LOSSES:
        raise ValueError(f"unknown property loss {kind!r}; choose one of cos_sigmoid, bce, cos")
    use = (enabled() if fused is None else fused) and z_low.device.type == "cpu" and ignore_index == IGNORE
    if use and extension() is not None:
        valid, n_valid, _ = _labelled(labels, signatures.shape[0], ignore_index, "signature")
        if n_valid == 0:
            return z_low.sum() * 0.0
        idx, w, counts = signature_index(signatures.to(z_low.device))
        y_norm = counts.float().clamp_min(1).sqrt()
        return _FusedPropertyLoss.apply(z_low, labels, idx.contiguous(), w.float().contiguous(),
                                        y_norm.contiguous(), temperature, kind, int(n_valid))
    up = F.interpolate(z_low, size=labels.shape[1:], mode="bilinear", align_corners=False)
    return property_loss(up, labels, signatures, temperature, kind, ignore_index)


def full_resolution_scores(z_low: torch.Tensor, size: tuple[int, int], signatures: torch.Tensor,
                           temperature: float) -> torch.Tensor | None:
    """cos(sigmoid(z'/T), y_c) with z' the logits bilinearly upsampled to ``size``, for every class
    (B, C, H, W), without the (B, K, H, W) map; None where the fused kernel is unavailable (CUDA, not built,
    switched off), so the caller takes the reference path."""
    if not enabled() or z_low.device.type != "cpu" or extension() is None:
        return None
    from .losses import signature_index

    idx, w, counts = signature_index(signatures.to(z_low.device))
    # a class with an all-zero signature scores 0, as F.normalize of a zero vector does
    y_norm = counts.float().sqrt().clamp_min(1e-12)
    z = z_low.detach().permute(0, 2, 3, 1).contiguous().float()
    return extension().scores(z, int(size[0]), int(size[1]), idx.contiguous(), w.float().contiguous(),
                              y_norm.contiguous(), float(temperature))
