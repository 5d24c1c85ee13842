"""How long the README's two set-up paths take on a fresh clone: `make venv` (from the pip cache this machine
has) and `make demo` with an empty ``PROLAB_CACHE`` (the pipeline, its kernel build and the embedded dataset
included), each timed as wall clock. The clone is made from the committed HEAD (``git clone`` of this
checkout) into a temporary folder with ``../shared`` linked beside it, so nothing of this checkout's venv, cache
or build outputs is reused. Prints figures, asserts nothing; writes them to ``--out`` when given.

    .venv/bin/python bench/bench_setup.py [--out results/bench/setup.txt]
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    a = ap.parse_args()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="prolab-setup-"))
    try:
        clone = tmp / "main"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        shared = REPO.parent / "shared"
        if shared.is_dir():
            (tmp / "shared").symlink_to(shared)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROLAB_", "VIRTUAL_ENV"))}
        env.update(PROLAB_CACHE=str(tmp / "cache"))
        venv = _timed(["make", "venv"], clone, env)
        demo = _timed(["make", "demo"], clone, env)
        timings = json.loads((clone / "results" / "demo" / "timings.json").read_text())
        lines = [f"fresh clone of {head}, {os.cpu_count()} CPUs ({platform.machine()}), pip cache as this machine "
                 "has it, empty PROLAB_CACHE; wall clock",
                 f"make venv   {venv:6.0f} s",
                 f"make demo   {demo:6.0f} s   (notebooks {sum(timings.values()):.0f} s of it, "
                 "results/demo/timings.json of that run)"]
        text = "\n".join(lines)
        print(text)
        if a.out:
            Path(a.out).write_text(text + "\n")
    finally:
        if a.keep:
            print(f"clone kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
