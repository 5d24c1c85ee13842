"""Kill a real retrieval subprocess with SIGKILL mid-run, resume it, and count the LLM calls."""
import json
import os
import signal
import subprocess
import sys
import time

from prolab.describe.stub_server import StubChatServer, StubScript

CLASSES = ["road", "sky", "tree", "car", "person", "bus", "train", "wall", "fence", "pole", "grass", "water"]


def _cmd(srv, tmp_path, classes):
    return [sys.executable, "-m", "prolab", "describe", "--backend", "openai", "--llm", "stub-model",
            "--base_url", srv.base_url, "--dataset", str(classes), "--out_root", str(tmp_path / "out"),
            "--cache_path", str(tmp_path / "calls.jsonl"), "--concurrency", "2"]


def _cached_classes(cache):
    if not cache.exists():
        return set()
    out = set()
    for line in cache.read_text().splitlines():
        try:
            out.add(json.loads(line)["class_name"])
        except (json.JSONDecodeError, KeyError):
            pass  # a line cut by the kill
    return out


def test_sigkill_then_resume_repeats_no_finished_call(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    cache = tmp_path / "calls.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": "unused-by-stub"}
    with StubChatServer(StubScript(latency=0.25)) as srv:
        proc = subprocess.Popen(_cmd(srv, tmp_path, classes), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while len(_cached_classes(cache)) < 4 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = _cached_classes(cache)
        assert 4 <= len(done_before) < len(CLASSES), "the kill should land mid-run"
        assert not (tmp_path / "out").exists()  # no descriptor file from the killed run
        requests_before = srv.stats.requests

        res = subprocess.run(_cmd(srv, tmp_path, classes), env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        # nothing finished before the kill was asked again
        for c in done_before:
            assert srv.stats.completed[c] == 1, c
        # at most the calls that were in flight at the kill (concurrency 2) were repeated
        assert srv.stats.requests <= len(CLASSES) + 2
        # the resumed run asked exactly for the classes missing from the cache
        assert srv.stats.requests - requests_before == len(CLASSES) - len(done_before)
    [out] = [p for p in (tmp_path / "out" / "classes").glob("*.json") if not p.name.endswith(".meta.json")]
    data = json.loads(out.read_text())
    assert list(data) == CLASSES and all(len(v) == 8 for v in data.values())
    assert f"{len(CLASSES) - len(done_before)} new calls" in res.stdout
