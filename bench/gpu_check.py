"""One prepared GPU check (`make gpu-check`), at most 10 minutes on one GPU. Parts, each in its own process under
its own time limit, so that one failure or hang does not hide the others:

  triton    tests/segment/test_fused_triton.py with the Triton kernels compiled, on CUDA tensors (TRITON_INTERPRET unset)
  gpu       the tests marked ``gpu`` (pytest -m gpu)
  train     a few mixed-precision iterations (bf16 where the GPU has it, else fp16 with a grad scaler) of the kit's
            model with the ViT-Adapter-B backbone, through TrainConfig/train (device cuda, amp), small crops,
            random initialisation, in a scratch PROLAB_CACHE
  mmseg     configs/mmseg/prolab_tiny_synthetic.py through mmengine's Runner on CUDA, a few iterations and an
            evaluation (skipped when mmsegmentation is not installed: `make mmseg`)
  heads     bench/bench_heads.py --device cuda
  groupvit  PGSeg's network at the paper's size (GroupViT-S, transformers, random weights): a few bf16 training
            steps of the image-text contrastive loss + 0.1 L_PG per grouping stage, batch 64 at 224 px, then the
            composed stage assignments at evaluation

Everything printed goes to results/bench/gpu_check.txt too (with the GPU, driver, torch, CUDA and Triton
versions). Exit status 1 when a part failed or ran out of time. Without a CUDA device it prints one line,
"gpu-check: no CUDA device: skipped", writes nothing and exits 0.

    .venv/bin/python bench/gpu_check.py [--parts triton gpu train mmseg heads] [--out results/bench/gpu_check.txt]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # prolab from this checkout, also where it is not installed
OUT = REPO / "results" / "bench" / "gpu_check.txt"
TOTAL_S = 600
# seconds each part may take; together under TOTAL_S, with room for start-up and the summary
BUDGET = {"triton": 135, "gpu": 45, "train": 120, "mmseg": 100, "heads": 110, "groupvit": 60}
TITLE = {
    "triton": "Triton kernels compiled, on CUDA tensors (tests/segment/test_fused_triton.py)",
    "gpu": "tests marked gpu (pytest -m gpu)",
    "train": "ViT-Adapter-B training step, mixed precision (TrainConfig/train, device cuda, amp)",
    "mmseg": "mmseg tiny config on CUDA (configs/mmseg/prolab_tiny_synthetic.py)",
    "heads": "bench/bench_heads.py --device cuda",
    "groupvit": "GroupViT-S (PGSeg's network) training steps, bf16, contrastive + L_PG (prolab.wovss)",
}
TINY_MMSEG = "configs/mmseg/prolab_tiny_synthetic.py"


class Tee:
    """Print and append to the output file at once, so a killed run still leaves what it had."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w", encoding="utf-8")

    def __call__(self, text: str = ""):
        print(text, flush=True)
        self.f.write(text + "\n")
        self.f.flush()


def machine_info() -> list[str]:
    import torch

    p = torch.cuda.get_device_properties(0)
    lines = [f"date         {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
             f"gpu          {torch.cuda.get_device_name(0)} (compute capability {p.major}.{p.minor}, "
             f"{p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs), {torch.cuda.device_count()} visible",
             f"bf16         {'supported' if torch.cuda.is_bf16_supported() else 'not supported: fp16 + grad scaler'}",
             f"torch        {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"]
    try:
        import triton

        lines.append(f"triton       {triton.__version__}")
    except ImportError:
        lines.append("triton       not installed")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        lines.append(f"driver       {smi or 'unknown'}")
    except (OSError, subprocess.TimeoutExpired):
        lines.append("driver       unknown (no nvidia-smi)")
    lines.append(f"python       {sys.version.split()[0]} ({sys.executable}), {platform.platform()}, "
                 f"{os.cpu_count()} CPUs")
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
        lines.append(f"checkout     {rev or 'unknown'}{' (with uncommitted changes)' if dirty else ''}")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return lines


def run_child(cmd: list[str], env: dict, timeout: float) -> tuple[int | None, str, float]:
    """(exit status or None on timeout, stdout+stderr, seconds); the child's whole process group goes on timeout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(1.0, timeout))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        rc = None
    return rc, out or "", time.perf_counter() - t0


def child_env(cache: Path) -> dict:
    from prolab import paths

    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)       # compiled kernels, not the interpreter
    # the C++ kernel (test_fused_triton's CPU-side checks) where it is kept: built once per machine, not per check
    env["PROLAB_EXTENSIONS"] = str(paths.extensions_dir())
    env["PROLAB_CACHE"] = str(cache)        # a scratch cache: the embedded default, runs
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def last_line(out: str, *starts: str) -> str:
    for line in reversed(out.strip().splitlines()):
        if not starts or line.strip().startswith(starts) or any(s in line for s in starts):
            return line.strip().strip("=").strip()
    return ""


def part_command(name: str) -> list[str]:
    py = sys.executable
    if name == "triton":
        return [py, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rs", "tests/segment/test_fused_triton.py"]
    if name == "gpu":
        return [py, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rs", "-m", "gpu", "tests"]
    if name == "heads":
        return [py, "bench/bench_heads.py", "--device", "cuda"]
    return [py, str(Path(__file__).resolve()), "--child", name]


def shown(name: str, rc: int | None, out: str) -> list[str]:
    """What of a part's output goes to the screen and the file: everything, but for a successful mmseg part (its
    Runner dumps the whole config) the environment's CUDA lines, the training log and the result."""
    lines = [line.rstrip("\r").split("\r")[-1] for line in out.rstrip().splitlines()]  # a progress bar: its end
    if name == "mmseg" and rc == 0:
        keep = ("CUDA", "GPU ", "PyTorch:", "RESULT")
        return [line for line in lines if line.lstrip().startswith(keep) or "Iter(train)" in line or "mIoU:" in line]
    return lines


def judge(name: str, rc: int | None, out: str, limit: float | None = None) -> tuple[str, str]:
    """(status, one-line detail) for the summary."""
    if rc is None:
        return "TIMEOUT", f"killed after its {limit or BUDGET[name]:.0f} s"
    if name in ("triton", "gpu"):
        closing = last_line(out, " passed", " failed", " error", "no tests ran", " deselected", " skipped")
        if name == "gpu" and rc == 5:
            return "none", f"no test carries the gpu marker ({closing})"
        if name == "triton" and rc == 0 and "test_cuda_dispatch_and_determinism PASSED" not in out:
            # it runs only with the kernels compiled on a GPU: otherwise they ran interpreted, or not at all
            return "SKIPPED", f"the kernels did not run compiled on CUDA ({closing})"
        return ("ok" if rc == 0 else "FAILED"), closing
    if rc == 0:
        result = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if result and result[-1].startswith("RESULT skipped"):
            return "skipped", result[-1][len("RESULT skipped: "):]
        if name == "heads":
            goals = [line for line in out.splitlines() if line.startswith("goal")]
            unmet = sum("NOT met" in g for g in goals)
            return "ok", f"{len(goals)} goal lines, {unmet} NOT met (figures only; see above)"
        return "ok", result[-1][len("RESULT "):] if result else "finished"
    return "FAILED", last_line(out, "Error", "error", "Exception") or f"exit status {rc}"


# ---- the parts that run in a child process of this script (--child NAME) -----------------------------------


def child_train(device: str):
    """A few bf16/fp16 iterations of the kit's model with ViT-Adapter-B on CUDA through TrainConfig/train."""
    import importlib

    import torch

    from prolab.train.config import TrainConfig
    from prolab.train.loop import train

    T = importlib.import_module("prolab.train.loop")   # the module (prolab.train.train is the function)

    dtypes = []
    real_loss = T.segmentation_loss

    def recording_loss(out, *a, **k):             # the dtypes the heads produced under train()'s autocast
        if not dtypes:
            dtypes.append(sorted({str(v.dtype).replace("torch.", "") for v in
                                  (out.values() if isinstance(out, dict) else [out]) if torch.is_tensor(v)}))
        return real_loss(out, *a, **k)

    T.segmentation_loss = recording_loss
    iters = 6
    cfg = TrainConfig.preset("demo", run_name="gpu-check-vit-adapter", backbone="vit_adapter_base", pretrained="none",
                             device=device, amp=True, batch_size=4, crop_size=128, iters=iters, warmup_iters=2,
                             channels=64, log_interval=1, checkpoint_interval=iters, layer_decay=0.95, resume=False)
    cuda = torch.device(device).type == "cuda"
    want = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if cuda else "float32"  # amp: CUDA only
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    shown_keys = ("backbone", "pretrained", "mode", "crop_size", "batch_size", "iters", "amp", "device", "layer_decay")
    print(f"config: {json.dumps({k: v for k, v in cfg.to_dict().items() if k in shown_keys})}")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train(cfg, progress=False, force=True)
    sync()
    seconds = time.perf_counter() - t0
    for row in res.log:
        print(f"iteration {row['iteration']}: loss {row['loss']:.4f}, lr {row['lr']:.2e}, {row['seconds']:.2f} s")
    losses = [row["loss"] for row in res.log]
    assert len(losses) == iters, f"{len(losses)} iterations logged, {iters} asked"
    assert all(l == l and abs(l) != float("inf") for l in losses), f"non-finite loss: {losses}"
    assert res.weights.exists(), f"no weights written at {res.weights}"
    assert dtypes and want in dtypes[0], \
        f"the heads' outputs were {dtypes[0] if dtypes else '?'}, no {want}: no autocast?"
    per_it = (res.log[-1]["seconds"] - res.log[0]["seconds"]) / max(1, len(res.log) - 1)
    print(f"RESULT {want} autocast (heads' outputs: {', '.join(dtypes[0])}), {iters} iterations of batch "
          f"{cfg.batch_size} x {cfg.crop_size} px, loss "
          f"{losses[0]:.3f} -> {losses[-1]:.3f}, {per_it * 1000:.0f} ms/iteration after the first, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan'):.2f} GiB, {seconds:.1f} s in all")


def child_mmseg(device: str):
    """The tiny mmseg config on CUDA: a few iterations through mmengine's Runner, then its evaluation (the
    Runner puts the model on CUDA whenever there is one; ``device`` only says what to expect)."""
    try:
        import mmseg  # noqa: F401
    except ImportError:
        print("RESULT skipped: mmsegmentation is not installed (make mmseg)")
        return
    import torch

    from prolab.interop.mmseg.train import build_runner

    work = Path(os.environ["PROLAB_CACHE"]) / "mmseg-work"
    iters = 10
    # no evaluation inside train(): one, after it (val_begin past the last iteration)
    options = {"train_cfg.max_iters": iters, "train_cfg.val_interval": iters, "train_cfg.val_begin": iters + 1,
               "default_hooks.checkpoint.interval": iters, "default_hooks.logger.interval": 5}
    try:
        from prolab.segment.backbones import offline_mobilenetv2_file

        offline_mobilenetv2_file()
    except Exception as e:  # noqa: BLE001 - the packaged weights are absent (not this kit's venv): random init
        print(f"offline MobileNetV2 weights not found ({e}): random initialisation")
        options["model.backbone.pretrained"] = None
    runner = build_runner(str(REPO / TINY_MMSEG), str(work), cfg_options=options)
    t0 = time.perf_counter()
    runner.train()
    metrics = runner.val_loop.run()
    dev = next(runner.model.parameters()).device
    assert dev.type == torch.device(device).type, f"the Runner put the model on {dev}, not {device}"
    assert 0 <= metrics["mIoU"] <= 100, metrics
    import mmengine

    print(f"RESULT {iters} iterations + evaluation on {dev}: mIoU {metrics['mIoU']:.2f}, "
          f"{time.perf_counter() - t0:.1f} s (mmseg {mmseg.__version__}, mmengine {mmengine.__version__})")


def child_groupvit(device: str):
    """GroupViT-S at the paper's size (prolab.wovss.model's ``paper`` preset, random weights): a few AdamW steps
    of transformers' image-text contrastive loss plus 0.1 L_PG of each grouping stage (prolab.wovss.npr) under
    autocast, then the soft assignments at evaluation, composed into a pixel -> group map."""
    import torch

    from prolab.wovss.grouping import compose_assignments
    from prolab.wovss.model import build_groupvit
    from prolab.wovss.npr import NPR_WEIGHT, em_prototypes, match_prototypes, pg_loss

    cuda = torch.device(device).type == "cuda"
    batch, steps = (64, 5) if cuda else (2, 2)                  # --device cpu: a smoke test of the same code
    model = build_groupvit("paper").to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, 224, 224, generator=g).to(device)
    ids = torch.randint(1, 49407, (batch, 77), generator=g).to(device)
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.bfloat16
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
            out = model(input_ids=ids, pixel_values=pixels, return_loss=True, output_hidden_states=True)
            hs = out.vision_model_output.hidden_states
            pg = []
            for i in range(2):                                     # the two grouping stages
                protos, _ = em_prototypes(hs[i].float(), hs[i + 1].shape[1], generator=g)
                match = match_prototypes(hs[i + 1], protos)
                pg.append(pg_loss(hs[i + 1].float(), protos, match).value)
            loss = out.loss + NPR_WEIGHT * sum(pg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        att = model.vision_model(pixel_values=pixels[:2], output_attentions=True).attentions
        final = compose_assignments(*[a.float() for a in att if a is not None])
    assert all(l == l for l in losses), f"non-finite loss: {losses}"
    assert torch.allclose(final.sum(1), torch.ones_like(final.sum(1)), atol=1e-3), "assignments do not sum to 1"
    print(f"RESULT {steps} steps of batch {batch} x 224 px ({str(dtype).replace('torch.', '')} autocast), loss "
          f"{losses[0]:.3f} -> {losses[-1]:.3f}, {1000 * sum(times[1:]) / max(1, len(times) - 1):.0f} ms/step after the "
          f"first, peak {torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan'):.2f} GiB; final groups "
          f"{tuple(final.shape[1:])} per image")


CHILDREN = {"train": child_train, "mmseg": child_mmseg, "groupvit": child_groupvit}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=list(BUDGET), default=list(BUDGET))
    ap.add_argument("--out", type=Path, default=OUT)
    # one part alone, in this process (what the check runs in a child); --device cpu tries it without a GPU
    ap.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        CHILDREN[a.child](a.device)
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device: skipped")
        return 0
    start = time.perf_counter()
    say = Tee(a.out)
    say(f"== gpu-check: {len(a.parts)} parts, at most {TOTAL_S} s ({', '.join(f'{p} {BUDGET[p]} s' for p in a.parts)})")
    for line in machine_info():
        say(line)
    rows = []
    cache = Path(tempfile.mkdtemp(prefix="prolab-gpu-check-"))
    try:
        env = child_env(cache)
        for name in a.parts:
            left = TOTAL_S - (time.perf_counter() - start)
            limit = min(BUDGET[name], left)
            cmd = part_command(name)
            say()
            say(f"== {name}: {TITLE[name]}")
            say(f"$ {' '.join(Path(c).name if c == sys.executable else c for c in cmd)}   (limit {limit:.0f} s)")
            if limit < 5:
                rows.append((name, "TIMEOUT", "no time left", 0.0))
                say("not run: no time left")
                continue
            try:
                rc, out, secs = run_child(cmd, env, limit)
                for line in shown(name, rc, out):
                    say(line)
                status, detail = judge(name, rc, out, limit)
            except Exception as e:  # noqa: BLE001 - one part's breakage must not hide the others
                status, detail, secs = "FAILED", f"{type(e).__name__}: {e}", 0.0
                say(detail)
            rows.append((name, status, detail, secs))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    total = time.perf_counter() - start
    say()
    say(f"== summary: {total:.0f} s of {TOTAL_S} s")
    for name, status, detail, secs in rows:
        say(f"{status:<8s} {name:<7s} {secs:6.1f} s  {TITLE[name]}: {detail}")
    bad = [n for n, s, _, _ in rows if s in ("FAILED", "TIMEOUT", "SKIPPED")]
    say(f"gpu-check: {'all parts passed' if not bad else 'NOT passed: ' + ', '.join(bad)} "
        f"(written to {a.out.relative_to(REPO) if a.out.is_relative_to(REPO) else a.out})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
