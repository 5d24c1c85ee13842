"""Fused kernels for the property head, computed from the quarter-resolution logits without a full-resolution
K-channel tensor.

Training: the property loss in one pass (bilinear upsampling, sigmoid(z/T) and the loss against the class
signature per labelled pixel, forward and backward). ``losses.property_loss`` on upsampled logits stays the
reference; the tests compare values and gradients.
Inference: class scores at the logits' resolution over each class's active properties
(``low_resolution_scores``), and the predicted class map as the argmax of the bilinearly upsampled scores
without the (B, C, H, W) map (``upsample_argmax``, any head's scores).

The CPU kernels are C++ (``fused.cpp``), compiled once at first use with torch's cpp_extension (g++ and
ninja; about 40 s on 2 cores) into ``paths.extensions_dir()`` (``$PROLAB_CACHE/torch_extensions/``). CUDA
tensors take the Triton kernels of ``fused_triton`` (the loss and full-resolution scores; where Triton is
missing or deterministic algorithms are requested, the reference path). Where the C++ kernel cannot be built,
everything falls back to the reference path (upsample, then the loss or the scores) and says so once.
``PROLAB_FUSED_LOSS=0`` turns every fused path off.
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

SOURCE = Path(__file__).with_name("fused.cpp")
KIND_CODE = {"cos_sigmoid": 0, "bce": 1, "cos": 2}
_ext = None
_failed: str | None = None


# Portable on purpose: no -ffast-math (it lets GCC reorder sums and call libm's CPU-dispatched vector expf) and no
# -march=native (the instruction set, hence vector widths and FMA, would follow the build machine); fp-contract
# off keeps a*b+c two roundings where the ISA has FMA (aarch64). With fused.cpp's own exp/log, the kernels give
# the same bits on every machine. -fopenmp: at::parallel_for is implemented in ATen's headers with OpenMP
# pragmas, so without it the kernels run on one thread (the libgomp torch loads serves the pragmas).
# -fno-trapping-math changes no result (it only stops preserving floating-point exception flags); it lets GCC
# if-convert the clamp in the sigmoid so that loop vectorises.
CFLAGS = ("-O3", "-fno-fast-math", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp")
LDFLAGS = ("-fopenmp",)
# The instruction set is a speed choice only: nothing in fused.cpp depends on the vector width (element-wise
# loops; sums in a fixed 8-lane order), so the AVX2 build gives the same bits as the baseline x86-64 build (a
# slow-marked test compares them) and runs the loss about 2x faster. A fixed level (x86-64-v3), never -march=native.
X86_64_V3 = ("-march=x86-64-v3",)
_V3_CPU_FLAGS = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isa_flags() -> tuple[str, ...]:
    """-march=x86-64-v3 on an x86-64 CPU that has all of it (PROLAB_FUSED_ISA=baseline forces the plain build)."""
    import platform

    if os.environ.get("PROLAB_FUSED_ISA", "auto") == "baseline":
        return ()
    if platform.machine() in ("x86_64", "AMD64") and _V3_CPU_FLAGS <= _cpu_flags():
        return X86_64_V3
    return ()


def enabled() -> bool:
    return os.environ.get("PROLAB_FUSED_LOSS", "1") != "0"


def extension():
    """The compiled kernel (built on first call, then loaded from the cache); None where it cannot be built."""
    global _ext, _failed
    if _ext is not None or _failed is not None:
        return _ext
    src = SOURCE.read_text(encoding="utf-8")
    # the build depends on the source, the flags, torch and Python, and the architecture (not the CPU model)
    import platform

    cflags = CFLAGS + isa_flags()
    tag = hashlib.sha256("|".join([src, " ".join(cflags + LDFLAGS), torch.__version__, sys.version,
                                   platform.machine()]).encode()).hexdigest()[:12]
    build = paths.extensions_dir() / f"prolab_fused_{tag}"
    build.mkdir(parents=True, exist_ok=True)
    # torch looks for ninja on PATH; the venv's bin (pip's ninja) may not be on it
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    try:
        import logging

        # its import warns that no CUDA runtime exists: true, and irrelevant to a CPU kernel
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        from torch.utils.cpp_extension import load

        from ..progress import tqdm

        with tqdm(total=1, desc="fused property kernels: compiling once (cached)", disable=(build / "done").exists()) as bar:
            _ext = load(name=f"prolab_fused_{tag}", sources=[str(SOURCE)], build_directory=str(build),
                        extra_cflags=list(cflags), extra_ldflags=list(LDFLAGS), verbose=False)
            bar.update()
        (build / "done").touch()
    except Exception as e:  # no compiler, no ninja, a failed build: the reference path still works
        _failed = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        warnings.warn(f"fused property kernels unavailable ({_failed}); using upsample + loss instead", stacklevel=2)
    return _ext


def _binary(signatures: torch.Tensor) -> bool:
    """The sparse scoring kernels read signatures as 0/1 (``signature_index``); soft ones take the dense path."""
    return bool(((signatures == 0) | (signatures == 1)).all())


_sparse_cache: tuple | None = None


def _cached_sparse(signatures: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(idx, float weights, counts, |y_c|) of ``losses.signature_index``, contiguous on CPU, kept for the last
    tensor seen: training and inference pass the model's buffer at every step. The cache holds the tensor
    weakly and checks its version counter, so an in-place edit or a new tensor recomputes it."""
    global _sparse_cache
    import weakref

    from .losses import signature_index

    if _sparse_cache is not None:
        ref, version, value = _sparse_cache
        if ref() is signatures and signatures._version == version:
            return value
    idx, w, counts = signature_index(signatures.cpu())
    # |y_c| clamped at 1: a class without properties has p.y = 0, so its loss is 1 and its score 0 either way
    value = (idx.contiguous(), w.float().contiguous(), counts, counts.float().clamp_min(1).sqrt().contiguous())
    _sparse_cache = (weakref.ref(signatures), signatures._version, value)
    return value


def sparse_signatures(signatures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``losses.signature_index`` of a signature tensor (idx, float weights, counts), cached (``_cached_sparse``)."""
    return _cached_sparse(signatures)[:3]


def _kernel_signatures(signatures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What every C++ kernel takes for the signatures: (idx, weights, |y_c|)."""
    idx, w, _, y_norm = _cached_sparse(signatures)
    return idx, w, y_norm


class _FusedPropertyLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z_low, labels, idx, wts, y_norm, temperature, kind, n_valid):
        ext = extension()
        z = z_low.detach().permute(0, 2, 3, 1).contiguous().float()        # channels-last (B, h, w, K)
        lab = labels.contiguous().long()
        # per-image sums added in image order (torch's sum may pair them by the CPU's vector width)
        total = torch.tensor(sum(ext.forward(z, lab, idx, wts, y_norm, float(temperature), KIND_CODE[kind],
                                             IGNORE).tolist()), dtype=torch.float64)
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


def backend(t: torch.Tensor) -> str | None:
    """Which fused implementation serves tensors like ``t``: "cpu" (the C++ kernel), "triton" (CUDA, where
    Triton is installed and deterministic algorithms are not requested: its backward adds with atomics) or
    None (the reference path)."""
    if t.device.type == "cpu":
        return "cpu" if extension() is not None else None
    if t.device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
        from .fused_triton import available

        return "triton" if available() else None
    return None


def upsampled_property_loss(z_low: torch.Tensor, labels: torch.Tensor, signatures: torch.Tensor,
                            temperature: float, kind: str = "cos_sigmoid", ignore_index: int = IGNORE,
                            fused: bool | None = None) -> torch.Tensor:
    """``property_loss`` of the logits bilinearly upsampled to the label size, from the low-resolution logits
    z (B, K, h, w). Fused (no full-resolution K-channel tensor) where ``backend`` names a kernel (C++ on CPU,
    Triton on CUDA); otherwise upsample, then ``property_loss``."""
    from .losses import labelled, property_loss

    if kind not in PROPERTY_LOSSES:
        raise ValueError(f"unknown property loss {kind!r}; choose one of cos_sigmoid, bce, cos")
    path = backend(z_low) if (enabled() if fused is None else fused) else None
    if path == "cpu" and ignore_index != IGNORE:
        path = None
    if path is not None:
        valid, n_valid, _ = labelled(labels, signatures.shape[0], ignore_index, "signature")
        if n_valid == 0:
            return z_low.sum() * 0.0
    if path == "triton":
        from .fused_triton import TritonPropertyLoss

        return TritonPropertyLoss.apply(z_low, labels, signatures, temperature, kind, ignore_index, int(n_valid))
    if path == "cpu":
        return _FusedPropertyLoss.apply(z_low, labels, *_kernel_signatures(signatures), temperature, kind,
                                        int(n_valid))
    up = F.interpolate(z_low, size=labels.shape[1:], mode="bilinear", align_corners=False)
    return property_loss(up, labels, signatures, temperature, kind, ignore_index)


def full_resolution_scores(z_low: torch.Tensor, size: tuple[int, int], signatures: torch.Tensor,
                           temperature: float) -> torch.Tensor | None:
    """cos(sigmoid(z'/T), y_c) with z' the logits bilinearly upsampled to ``size``, for every class
    (B, C, H, W), without the (B, K, H, W) map (C++ on CPU, Triton on CUDA); None where no fused kernel serves
    (not built, switched off, soft signatures on CPU), so the caller takes the reference path."""
    path = backend(z_low) if enabled() else None
    if path == "triton":
        from .fused_triton import full_resolution_scores as triton_scores

        return triton_scores(z_low, size, signatures, temperature)
    if path != "cpu" or not _binary(signatures):
        return None
    z = z_low.detach().permute(0, 2, 3, 1).contiguous().float()
    return extension().scores(z, int(size[0]), int(size[1]), *_kernel_signatures(signatures), float(temperature))


def low_resolution_scores(z_low: torch.Tensor, signatures: torch.Tensor, temperature: float) -> torch.Tensor | None:
    """cos(sigmoid(z/T), y_c) at the logits' resolution, (B, C, h, w) (a channels-last view), summing over each
    class's active properties; None where the kernel is unavailable or the signatures are not 0/1."""
    if not enabled() or z_low.device.type != "cpu" or not _binary(signatures) or extension() is None:
        return None
    z = z_low.detach().contiguous().float()          # channels-first, as the head writes it: no copy
    out = extension().low_resolution_scores(z, *_kernel_signatures(signatures), float(temperature))
    return out.permute(0, 3, 1, 2)


def upsample_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    """argmax over classes of ``scores`` (B, C, h, w) bilinearly upsampled to ``size`` (align_corners=False),
    (B, H, W) int64, without the upsampled map; None where the kernel is unavailable (the caller upsamples)."""
    if not enabled() or scores.device.type != "cpu" or extension() is None:
        return None
    s = scores.detach().permute(0, 2, 3, 1).contiguous().float()     # a no-op for low_resolution_scores' output
    return extension().upsample_argmax(s, int(size[0]), int(size[1]))
