"""The fused kernels' speed under two builds: the portable build the kit uses (``fused.CFLAGS``, its own exp/log)
against another source and flags, e.g. the earlier -ffast-math -march=native build:

    git show <commit>:prolab/segment/fused.cpp > /tmp/fused_before.cpp
    python bench/bench_kernel_build.py --baseline_source /tmp/fused_before.cpp \
        --baseline_flags "-O3 -ffast-math -march=native -fopenmp"

Both are compiled into a scratch folder and timed alternately in one process (median of --repeats) on the bench
setting of bench_heads.py (batch 8, K=256 quarter-resolution logits of a 128 px crop, C=150): the loss forward
and backward (cos_sigmoid), class scores at the logits' resolution and at full resolution. It also prints the
largest difference between the two builds' outputs.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build(name: str, source: Path, flags: list[str], where: Path):
    from torch.utils.cpp_extension import load

    d = where / name
    d.mkdir(parents=True, exist_ok=True)
    return load(name=name, sources=[str(source)], build_directory=str(d), extra_cflags=flags,
                extra_ldflags=["-fopenmp"], verbose=False)


def main() -> None:
    from prolab.segment import fused
    from prolab.segment.losses import signature_index

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline_source", required=True, help="the other build's fused.cpp")
    ap.add_argument("--baseline_flags", default="-O3 -ffast-math -march=native -fopenmp")
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    torch.manual_seed(0)
    B, K, C, h, H = 8, 256, 150, 32, 128
    z = torch.randn(B, h, h, K) * 0.3
    labels = torch.randint(0, C, (B, H, H))
    labels[:, :4] = 255
    sig = (torch.rand(C, K) < 0.04).float()
    sig[torch.arange(C), torch.arange(C) % K] = 1
    idx, w, counts = signature_index(sig)
    w, yn = w.float().contiguous(), counts.float().clamp_min(1).sqrt().contiguous()
    zc = z.permute(0, 3, 1, 2).contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        exts = {"portable": build("bench_portable", fused.SOURCE, list(fused.CFLAGS + fused.isa_flags()), Path(tmp)),
                "baseline": build("bench_baseline", Path(a.baseline_source), a.baseline_flags.split(), Path(tmp))}
        ops = {
            "loss forward": lambda e: e.forward(z, labels, idx, w, yn, 0.04, 0, 255),
            "loss backward": lambda e: e.backward(z, labels, idx, w, yn, 0.04, 0, 255, 1e-4),
            "scores, logits' resolution": lambda e: e.low_resolution_scores(zc, idx, w, yn, 0.04),
            "scores, full resolution": lambda e: e.scores(z, H, H, idx, w, yn, 0.04),
        }
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {a.repeats}; baseline "
              f"flags: {a.baseline_flags}; portable flags: {' '.join(fused.CFLAGS + fused.isa_flags())}")
        for name, op in ops.items():
            times = {k: [] for k in exts}
            for _ in range(a.repeats):
                for k, e in exts.items():
                    t0 = time.perf_counter()
                    op(e)
                    times[k].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            diff = float((op(exts["portable"]).double() - op(exts["baseline"]).double()).abs().max())
            print(f"{name:28s} baseline {med['baseline']:8.2f} ms  portable {med['portable']:8.2f} ms  "
                  f"x{med['portable'] / med['baseline']:.3f}   max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
