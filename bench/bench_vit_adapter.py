"""ViT-Adapter-B, the paper's backbone: parameter count (backbone alone, and with the paper's UperNet 512 +
FCN 256 heads for ADE20K's 150 classes, next to the ViT-Adapter release's 134M) and forward time of one
512x512 image (inference, no_grad). Prints figures.

    .venv/bin/python bench/bench_vit_adapter.py [--size 512] [--steps 3] [--threads N] [--device cpu]
"""
import argparse
import platform
import statistics
import time

import torch

from prolab.segment.model import ModelDefaults, SegModel
from prolab.segment.vit_adapter import PAPER_PARAMS_M, count_parameters, vit_adapter_base


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    backbone = vit_adapter_base(pretrained=None).eval()
    seg = SegModel(150, "category", defaults=ModelDefaults(backbone="vit_adapter_base", pretrained=None,
                                                           channels=512, aux_channels=256))
    dev = torch.device(a.device)
    backbone.to(dev)
    x = torch.randn(1, 3, a.size, a.size, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():
        backbone(x)  # warm-up
        for _ in range(a.steps):
            sync()
            t0 = time.perf_counter()
            backbone(x)
            sync()
            times.append(time.perf_counter() - t0)
    where = torch.cuda.get_device_name(0) if dev.type == "cuda" else f"{platform.machine()} CPU, {a.threads} threads"
    print(f"ViT-Adapter-B parameters: {count_parameters(backbone) / 1e6:.2f}M backbone; "
          f"{count_parameters(seg) / 1e6:.2f}M with UperNet 512 + FCN 256 heads for 150 classes "
          f"(ViT-Adapter release: {PAPER_PARAMS_M:g}M for UperNet + ViT-Adapter-B)")
    print(f"forward 1x3x{a.size}x{a.size}, no_grad, median of {a.steps}: {statistics.median(times):.2f} s on {where} "
          f"(torch {torch.__version__})")


if __name__ == "__main__":
    main()
