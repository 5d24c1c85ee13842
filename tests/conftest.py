import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests never touch a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests run with scratch caches; the fused loss kernel is compiled once per machine, not once per test (and
# subprocesses and notebook kernels inherit this).
os.environ.setdefault("PROLAB_EXTENSIONS", str(Path(os.environ.get("TMPDIR", "/tmp")) / "prolab-test-extensions"))
# Likewise the embedded default dataset is rendered once per machine (about 8 s), not once per scratch cache.
os.environ.setdefault("PROLAB_DATASETS", str(Path(os.environ.get("TMPDIR", "/tmp")) / "prolab-test-datasets"))
# Without a GPU the Triton kernels (segment.fused_triton) run in Triton's interpreter on CPU tensors; the switch
# is read when a kernel is decorated, so it is set before anything imports them.
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session", autouse=True)
def embedded_dataset():
    """The embedded default rendered (or found) once, before any test: a test that kills a process never
    interrupts a rendering of the shared folder."""
    from prolab.datasets import synthetic

    return synthetic.generate(progress=False)


@pytest.fixture
def stub_server():
    from prolab.describe.stub_server import StubChatServer

    srv = StubChatServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def repo():
    return REPO


@pytest.fixture
def python():
    return sys.executable


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A scratch checkout with the committed notebooks, descriptors, properties and configs (``make_scratch_root``);
    a test file that needs other folders defines its own."""
    return make_scratch_root(tmp_path, monkeypatch)


def make_scratch_root(tmp_path, monkeypatch, folders=("notebooks", "descriptors", "properties", "configs")):
    """A scratch checkout (copies of ``folders``, the package linked) as PROLAB_ROOT and an empty PROLAB_CACHE,
    so a test's runs never touch the committed artefacts or the user's cache."""
    import shutil

    root = tmp_path / "repo"
    root.mkdir()
    for name in folders:
        shutil.copytree(REPO / name, root / name)
    (root / "prolab").symlink_to(REPO / "prolab")
    monkeypatch.setenv("PROLAB_ROOT", str(root))
    monkeypatch.setenv("PROLAB_CACHE", str(tmp_path / "cache"))
    return root


@pytest.fixture(scope="module")
def minilm():
    """The offline MiniLM embedder, loaded once per test module."""
    from prolab.embed import make_embedder

    return make_embedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def fused_kernels():
    """The fused C++ kernels (segment.fused), built once per test session; a build failure fails the test."""
    from prolab.segment import fused

    e = fused.extension()
    if e is None:
        pytest.fail(f"the fused kernel did not build: {fused._failed}")
    return e


def write_run_config(root, cfg: dict, name: str = "c"):
    """A run config YAML in a scratch checkout's configs/."""
    import yaml

    f = root / "configs" / f"{name}.yaml"
    f.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return f


def tree_hash(folder) -> dict:
    """Every file (and empty folder) under ``folder`` with the sha256 of its bytes: "byte-identical" for a tree."""
    import hashlib

    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir() and not any(p.iterdir()):
            out[rel] = "<empty folder>"
    return out


def run_prolab(*args, cwd=None, env: dict | None = None):
    """``prolab <args>`` in this process (the parser, the command and its error handling exactly as the console
    script runs them), for tests where no process exit or kill is under test: it saves the ~8 s of imports a
    subprocess pays. Returns what ``subprocess.run(..., capture_output=True, text=True)`` would: returncode
    (argparse's exit status for a bad flag, 2 for an expected error, 1 with the traceback for anything else),
    stdout and stderr. ``cwd`` and ``env`` apply for the call only; torch's thread count is restored after."""
    import contextlib
    import io
    import subprocess
    import traceback

    import torch

    from prolab.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    try:
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # noqa: BLE001 - as the console script would die: status 1, the traceback
                traceback.print_exc()
                rc = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["prolab", *argv], rc or 0, out.getvalue(), err.getvalue())
