"""Cost of property-level supervision against category-level supervision, measured side by side in one run.

Setting 1 (the loss layer matters): ADE20K-sized label space (C=150 classes, K=256 properties, d=384), batch 8,
128 px, MobileNetV2 + UPerNet 128. Setting 2 (realistic: the backbone dominates): ConvNeXt-T + UPerNet 512 at
512 px, batch 2. For each: the train step (forward, loss, backward, AdamW) with the category head, with the
property head through the fused loss (``segment.fused``) and through the reference path (upsample, then the
loss; ``PROLAB_FUSED_LOSS=0``); the class-name-embedding head; inference to the class map (category as plain
PyTorch users write it: interpolate the logits, argmax; ``SegModel.predict`` for every head: the kit's fused
argmax while upsampling, sparse property scores; the dense property scores; full-resolution scoring fused and
unfused); the loss layer alone (main head: category = F.interpolate + F.cross_entropy as plain PyTorch users
write it); and the peak memory of one train step (CPU:
the peak RSS growth of a fresh process over one step; CUDA: max_memory_allocated). Prints figures, asserts
nothing.

    .venv/bin/python bench/bench_heads.py [--steps 5] [--device cpu] [--settings bench realistic]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from prolab.segment import ModelDefaults, SegModel, segmentation_loss
from prolab.segment import fused
from prolab.segment.losses import property_loss

SETTINGS = {
    "bench": dict(classes=150, properties=256, dim=384, batch=8, size=128, channels=128, backbone="mobilenetv2_100"),
    "realistic": dict(classes=150, properties=256, dim=384, batch=2, size=512, channels=512, backbone="convnext_tiny"),
}
MODES = ("category", "property", "property (unfused)", "name_embedding")


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


def signatures(s):
    """~9.4 properties per class (ADE20K's release), every class at least one."""
    sig = (torch.rand(s["classes"], s["properties"]) < 9.4 / s["properties"]).float()
    sig[torch.arange(s["classes"]), torch.arange(s["classes"]) % s["properties"]] = 1
    return sig


def build(s, mode, dev):
    torch.manual_seed(0)
    bank = F.normalize(torch.randn(s["properties"], s["dim"]), dim=1)
    sig = signatures(s)
    names = F.normalize(torch.randn(s["classes"], s["dim"]), dim=1)
    m = SegModel(s["classes"], mode.split(" ")[0], bank, sig, 0.04, name_bank=names,
                 defaults=ModelDefaults(backbone=s["backbone"], pretrained=None, channels=s["channels"],
                                        aux_channels=s["channels"] // 2)).to(dev)
    x = torch.randn(s["batch"], 3, s["size"], s["size"], device=dev)
    y = torch.randint(0, s["classes"], (s["batch"], s["size"], s["size"]), device=dev)
    y[:, :4] = 255
    return m, torch.optim.AdamW(m.parameters(), lr=1e-4), x, y, sig.to(dev)


def step_fn(m, opt, x, y, sig):
    def step():
        m.train()
        out = m(x)
        loss = segmentation_loss(out, y, getattr(m, "signatures", None), 0.04, "cos_sigmoid", 0.4,
                                 name_bank=getattr(m, "name_bank", None))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def _status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_memory(setting, mode, dev):
    """Peak memory of one train step (the second: optimiser state already allocated) in MiB above what was
    resident before it: CUDA max_memory_allocated, or on CPU the peak RSS (VmHWM, reset through
    /proc/self/clear_refs) of a fresh process (this script re-run with --memory)."""
    if dev.type == "cuda":
        m, opt, x, y, sig = build(SETTINGS[setting], mode, dev)
        step_fn(m, opt, x, y, sig)()      # optimiser state exists from here on, as in training
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step_fn(m, opt, x, y, sig)()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    env = {**os.environ, "PROLAB_FUSED_LOSS": "0" if "unfused" in mode else os.environ.get("PROLAB_FUSED_LOSS", "1")}
    out = subprocess.run([sys.executable, __file__, "--memory", setting, mode], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["mib"]


def _memory_child(setting, mode):
    m, opt, x, y, sig = build(SETTINGS[setting], mode, torch.device("cpu"))
    if mode.startswith("property"):
        fused.extension()                 # the kernel's build or load is not part of a step
    step_fn(m, opt, x, y, sig)()          # optimiser state exists from here on, as in training
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                      # Linux: reset the peak RSS (VmHWM) to the current RSS
    base = _status_kb("VmRSS")
    step_fn(m, opt, x, y, sig)()
    print(json.dumps({"mib": (_status_kb("VmHWM") - base) / 1024}))


def loss_layer(s, dev, steps, sync):
    """Main-head loss layer alone, forward + backward, from quarter-resolution logits."""
    torch.manual_seed(0)
    h = s["size"] // 4
    sig = signatures(s).to(dev)
    y = torch.randint(0, s["classes"], (s["batch"], s["size"], s["size"]), device=dev)
    y[:, :4] = 255
    zc = torch.randn(s["batch"], s["classes"], h, h, device=dev, requires_grad=True)
    zp = torch.randn(s["batch"], s["properties"], h, h, device=dev, requires_grad=True)
    size = (s["size"], s["size"])

    def cat():
        F.cross_entropy(F.interpolate(zc, size=size, mode="bilinear", align_corners=False), y,
                        ignore_index=255).backward()

    def prop_fused():
        fused.upsampled_property_loss(zp, y, sig, 0.04).backward()

    def prop_ref():
        property_loss(F.interpolate(zp, size=size, mode="bilinear", align_corners=False), y, sig, 0.04).backward()

    return {name: timed(fn, steps, 1, sync) for name, fn in
            (("category (interpolate + cross_entropy)", cat), ("property, fused", prop_fused),
             ("property, upsample + loss", prop_ref))}


def inference_paths(m, mode, x):
    """(label, callable) for each way to get the class map (B, H, W) from images with this head. The plain
    category path is what PyTorch users write (interpolate the logits, argmax); ``predict`` is the kit's."""
    size = x.shape[2:]
    plain = lambda: F.interpolate(m(x)["logits"], size=size, mode="bilinear", align_corners=False).argmax(1)
    if mode == "category":
        return [("category (interpolate + argmax)", plain), ("category, kit predict (fused argmax)", lambda: m.predict(x))]
    if mode == "property":
        return [("property, kit predict (fused)", lambda: m.predict(x)),
                ("property, full resolution, fused", lambda: m.predict(x, score_resolution="full"))]
    if mode == "property (unfused)":    # PROLAB_FUSED_LOSS=0: dense scores, interpolate, argmax
        return [("property, dense scores + interpolate + argmax", lambda: m.predict(x)),
                ("property, full resolution, upsample first", lambda: m.predict(x, score_resolution="full"))]
    return [("name_embedding, kit predict", lambda: m.predict(x))]


def run_setting(name, dev, steps, sync):
    s = SETTINGS[name]
    print(f"\n== {name}: {s['backbone']} + UPerNet {s['channels']}, batch {s['batch']} x {s['size']} px, "
          f"C={s['classes']}, K={s['properties']}, d={s['dim']}")
    if dev.type == "cpu":
        fused.extension()
    train, infer = {}, {}
    for mode in MODES:
        os.environ["PROLAB_FUSED_LOSS"] = "0" if "unfused" in mode else "1"
        m, opt, x, y, sig = build(s, mode, dev)
        train[mode] = timed(step_fn(m, opt, x, y, sig), steps, 2, sync)
        m.eval()
        with torch.no_grad():
            for label, fn in inference_paths(m, mode, x):
                infer[label] = timed(fn, steps, 1, sync)
    os.environ["PROLAB_FUSED_LOSS"] = "1"
    ct, ci = train["category"], infer["category (interpolate + argmax)"]
    for mode, t in train.items():
        print(f"train step  {mode:<46s} {t * 1000:9.1f} ms   x{t / ct:.3f} category")
    for mode, t in infer.items():
        print(f"inference   {mode:<46s} {t * 1000:9.1f} ms   x{t / ci:.3f} category")
    layer = loss_layer(s, dev, steps, sync)
    lc = layer["category (interpolate + cross_entropy)"]
    for k, t in layer.items():
        print(f"loss layer  {k:<46s} {t * 1000:9.1f} ms   x{t / lc:.3f} category")
    mem = {mode: peak_memory(name, mode, dev) for mode in MODES}
    for mode, mib in mem.items():
        print(f"peak memory {mode:<46s} {mib:9.1f} MiB  x{mib / mem['category']:.3f} category")
    goals = [("train step property/category", train["property"] / ct, 1.05 if name == "bench" else 1.02),
             ("inference property/category", infer["property, kit predict (fused)"] / ci, 1.02),
             ("inference property/category kit predict",
              infer["property, kit predict (fused)"] / infer["category, kit predict (fused argmax)"], 1.02),
             ("loss layer property fused/category", layer["property, fused"] / lc, 1.0),
             ("peak memory property/category", mem["property"] / mem["category"], 1.1)]
    for label, r, goal in goals:
        print(f"goal        {label:<46s} {r:9.3f}      (goal <= {goal}) {'met' if r <= goal else 'NOT met'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--memory", nargs=2, metavar=("SETTING", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory:
        return _memory_child(*a.memory)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"device {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'CPU'}), torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, median of {a.steps} steps after warm-up")
    for name in a.settings:
        run_setting(name, dev, a.steps, sync)


if __name__ == "__main__":
    main()
