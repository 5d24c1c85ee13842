"""The real packaged Qwen2.5-Coder-1.5B GGUF, in process and behind llama_cpp.server (marker `llm`).

Needs `make llm`. Each test describes 3 classes into a temporary cache, so nothing committed is touched.
"""
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from prolab import offline
from prolab.describe import CallCache, describe_dataset, load_prompt, make_backend, retrieve

pytestmark = pytest.mark.llm
CLASSES = ["bicycle", "lamp", "river"]


@pytest.fixture(scope="module")
def gguf():
    pytest.importorskip("llama_cpp")
    path, model_id = offline.resolve_gguf("qwen")
    return path, model_id


def _check(result):
    for r in result.classes:
        assert len(r.descriptions) >= 3, (r.class_name, r.problem)
        assert all(len(d.split()) <= 30 for d in r.descriptions)
    assert sum(r.ok for r in result.classes) >= 2


def test_in_process_llama_cpp(gguf, tmp_path):
    backend = make_backend("llama_cpp", "qwen")
    assert backend.model_id == gguf[1]
    res = retrieve(CLASSES, backend, load_prompt("structured"), CallCache(tmp_path / "c.jsonl"), progress=False)
    _check(res)
    # a second run is answered from the cache
    again = retrieve(CLASSES, backend, load_prompt("structured"), CallCache(tmp_path / "c.jsonl"), progress=False)
    assert again.new_calls == 0 and again.descriptions == res.descriptions


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llama_cpp_server_through_openai_backend(gguf, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp.server")
    path, model_id = gguf
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
                             "--port", str(port), "--model_alias", model_id, "--n_ctx", "4096"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("llama_cpp.server did not come up")
                time.sleep(1)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        classes = tmp_path / "three.txt"
        classes.write_text("\n".join(CLASSES) + "\n")
        out = describe_dataset(str(classes), backend="openai", llm=model_id, base_url=f"http://127.0.0.1:{port}/v1",
                               out_root=tmp_path / "d", cache_path=tmp_path / "c.jsonl", progress=False)
        _check(out.result)
        assert out.meta["backend"]["base_url"] == f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
