"""Training speed with 1 and 2 threads (torch and the fused kernels' OpenMP), on an idle machine and on a loaded one.

Each measurement is a fresh process training the demo preset (property supervision, the embedded default) for
``--iters`` iterations with ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` = 1 or 2; "loaded" runs one busy process
per core beside it (what a grid shard, a test run or another user does to a two-core machine). The first
iterations (kernel build, data check) are excluded: the figure is seconds per iteration over the rest, from the
run's metrics log. Prints figures, asserts nothing; writes them to ``--out`` when given.

    .venv/bin/python bench/bench_threads.py [--iters 12] [--out results/bench/threads.txt]
"""
import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TRAIN = """
import sys
from prolab.train import train
from prolab.train.config import TrainConfig
cfg = TrainConfig.demo(run_name=sys.argv[1], iters=int(sys.argv[2]), log_interval=1, checkpoint_interval=10**6)
train(cfg, progress=False)
"""


def _busy(stop):
    x = 0
    while not stop.is_set():
        x += 1


def measure(threads: int, loaded: bool, iters: int, cache: str) -> float:
    stop = mp.Event()
    hogs = [mp.Process(target=_busy, args=(stop,)) for _ in range(os.cpu_count() or 2)] if loaded else []
    for h in hogs:
        h.start()
    try:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PROLAB_CACHE=cache,
                   PYTHONPATH=str(REPO))
        name = f"threads{threads}-{'loaded' if loaded else 'idle'}-{time.time_ns()}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", TRAIN, name, str(iters)], env=env, check=True, capture_output=True)
        total = time.perf_counter() - t0
    finally:
        stop.set()
        for h in hogs:
            h.join()
    log = [json.loads(line) for line in (Path(cache) / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    stamps = [r["seconds"] for r in log if "seconds" in r]   # elapsed since the run started
    if len(stamps) >= 4:   # per-iteration wall time after the first two iterations
        return (stamps[-1] - stamps[1]) / (len(stamps) - 2)
    return total / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="prolab-bench-threads-")
    # one warm-up run: renders the data, assembles the backbone and builds the kernels outside the timings
    measure(1, False, 2, cache)
    rows = []
    for loaded in (False, True):
        for threads in (1, 2):
            s = measure(threads, loaded, a.iters, cache)
            rows.append(f"{'loaded' if loaded else 'idle':6s}  {threads} thread(s)  {s:7.2f} s/iteration")
            print(rows[-1], flush=True)
    import torch

    head = (f"torch {torch.__version__}, {os.cpu_count()} CPUs, demo preset (batch 8, 128 px crops), {a.iters} "
            "iterations, seconds per iteration after the first two; loaded = one busy process per CPU beside it")
    if a.out:
        Path(a.out).write_text(head + "\n" + "\n".join(rows) + "\n")
        print(f"-> {a.out}")


if __name__ == "__main__":
    main()
