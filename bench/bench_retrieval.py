"""Retrieval wall time: sequential vs concurrent calls against a local OpenAI-compatible server that adds
latency per call, and the cached re-run. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_retrieval.py [--latency 1.0] [--dataset pascal_context_59] [--concurrency 8]
"""
import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from prolab import load_class_names
from prolab.describe import CallCache, RetrievalDefaults, load_prompt, make_backend, retrieve
from prolab.describe.stub_server import StubChatServer, StubScript


def timed_run(srv, classes, cache_file, concurrency):
    backend = make_backend("openai", "stub-model", base_url=srv.base_url)
    t0 = time.perf_counter()
    res = retrieve(classes, backend, load_prompt("structured"), CallCache(cache_file),
                   defaults=replace(RetrievalDefaults(), concurrency=concurrency), progress=False)
    return time.perf_counter() - t0, res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=1.0, help="seconds the server waits per call")
    ap.add_argument("--dataset", default="pascal_context_59")
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    classes = load_class_names(a.dataset)
    with tempfile.TemporaryDirectory() as d, StubChatServer(StubScript(latency=a.latency)) as srv:
        seq, r1 = timed_run(srv, classes, Path(d) / "seq.jsonl", 1)
        con, r2 = timed_run(srv, classes, Path(d) / "con.jsonl", a.concurrency)
        cached, r3 = timed_run(srv, classes, Path(d) / "con.jsonl", a.concurrency)
        peak = srv.stats.max_in_flight
    n = len(classes)
    print(f"{n} classes ({a.dataset}), server latency {a.latency:.2f} s per call")
    print(f"sequential (concurrency 1):  {seq:7.2f} s  ({r1.new_calls} calls)")
    print(f"concurrent ({a.concurrency}-way):        {con:7.2f} s  ({r2.new_calls} calls, peak {peak} in flight)"
          f"  speed-up x{seq / con:.1f}")
    print(f"cached re-run:               {cached:7.3f} s  ({r3.new_calls} calls, {r3.cached_calls} cache hits)"
          f"  speed-up x{seq / cached:.0f} vs sequential")


if __name__ == "__main__":
    main()
