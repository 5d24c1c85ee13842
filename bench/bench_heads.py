"""Cost of property-level supervision: train-step time with the property head vs the category head (same
backbone, batch and input), and inference time with class recovery (cosine to signatures) vs category
argmax. ADE20K-sized label spaces by default (C=150 classes, K=256 properties, d=384). Prints figures.

    .venv/bin/python bench/bench_heads.py [--batch 8] [--size 128] [--steps 10] [--device cpu]
"""
import argparse
import statistics
import time

import torch

from prolab.segment import ModelDefaults, SegModel, segmentation_loss


def timed(fn, steps, warmup, sync):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--classes", type=int, default=150)
    ap.add_argument("--properties", type=int, default=256)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(a.properties, a.dim), dim=1)
    sig = (torch.rand(a.classes, a.properties) < 9.4 / a.properties).float()  # ~9.4 properties per class (ADE20K)
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev)
    y = torch.randint(0, a.classes, (a.batch, a.size, a.size), device=dev)
    y[:, :4] = 255
    print(f"device {dev}, threads {torch.get_num_threads()}, batch {a.batch} x {a.size}px, C={a.classes}, "
          f"K={a.properties}, d={a.dim}, UPerNet channels {a.channels}")
    res = {}
    names = torch.nn.functional.normalize(torch.randn(a.classes, a.dim), dim=1)
    for mode in ("category", "property", "name_embedding"):
        torch.manual_seed(0)
        m = SegModel(a.classes, mode, bank, sig, 0.04, name_bank=names,
                     defaults=ModelDefaults(channels=a.channels, aux_channels=a.channels // 2)).to(dev)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def step():
            m.train()
            out = m(x)
            loss = segmentation_loss(out, y, getattr(m, "signatures", None), 0.04, "cos_sigmoid", 0.4,
                                     name_bank=getattr(m, "name_bank", None))
            opt.zero_grad()
            loss.backward()
            opt.step()

        def infer():
            m.eval()
            with torch.no_grad():
                m.predict_scores(x).argmax(1)

        res[mode] = (timed(step, a.steps, 2, sync), timed(infer, a.steps, 2, sync))
    (ct, ci), (pt, pi) = res["category"], res["property"]
    print(f"train step: category {ct * 1000:7.1f} ms   property {pt * 1000:7.1f} ms   ratio {pt / ct:.3f} (goal <= 1.05)")
    print(f"inference:  category {ci * 1000:7.1f} ms   property {pi * 1000:7.1f} ms   ratio {pi / ci:.3f} (goal <= 1.02)")
    nt, ni = res["name_embedding"]
    print(f"class-name embedding (d={a.dim}): train step {nt * 1000:7.1f} ms ({nt / ct:.3f}x category), "
          f"inference {ni * 1000:7.1f} ms ({ni / ci:.3f}x)")


if __name__ == "__main__":
    main()
