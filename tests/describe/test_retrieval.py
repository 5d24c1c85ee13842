import json
import time
from collections import deque
from dataclasses import replace

import pytest

from prolab.describe import (CallCache, GenerationParams, ReplayMissError, RetrievalDefaults, describe_dataset,
                             load_prompt, make_backend, retrieve)
from prolab.describe.stub_server import StubChatServer, StubScript, stub_reply

P = load_prompt("structured")
FAST = RetrievalDefaults(backoff_base=0.05, backoff_max=0.5)
CLASSES = ["road", "sky", "tree", "car", "person", "bus"]


def _backend(srv, **kw):
    return make_backend("openai", "stub-model", base_url=srv.base_url, **kw)


def test_reask_then_success(stub_server, tmp_path):
    stub_server.script.replies["road"] = ["- only one line", "- still\n- too\n- few", stub_reply("road")]
    res = retrieve(["road"], _backend(stub_server), P, CallCache(tmp_path / "c.jsonl"), defaults=FAST,
                   progress=False)
    r = res.classes[0]
    assert r.ok and r.attempts == 3 and len(r.descriptions) == 8
    assert stub_server.stats.completed["road"] == 3
    # the cache holds the whole conversation: attempt numbers 1..3
    recs = CallCache(tmp_path / "c.jsonl").records()
    assert sorted(x["attempt"] for x in recs) == [1, 2, 3]


def test_failed_class_is_reported_and_run_continues(stub_server, tmp_path):
    stub_server.script.replies["sky"] = ["I'm sorry, I cannot do that."] * 3
    res = retrieve(["road", "sky", "tree"], _backend(stub_server), P, CallCache(tmp_path / "c.jsonl"),
                   defaults=FAST, progress=False)
    assert list(res.failures) == ["sky"] and "refusal after 3 attempts" in res.failures["sky"]
    assert len(res.descriptions["tree"]) == 8
    assert "FAILED 'sky'" in res.summary()


def test_cache_hit_makes_no_calls(stub_server, tmp_path):
    cache = tmp_path / "c.jsonl"
    first = retrieve(CLASSES, _backend(stub_server), P, CallCache(cache), defaults=FAST, progress=False)
    n = stub_server.stats.requests
    second = retrieve(CLASSES, _backend(stub_server), P, CallCache(cache), defaults=FAST, progress=False)
    assert stub_server.stats.requests == n == len(CLASSES)
    assert second.cached_calls == len(CLASSES) and second.new_calls == 0
    assert second.descriptions == first.descriptions
    # other generation parameters are other calls
    retrieve(["road"], _backend(stub_server), P, CallCache(cache), params=GenerationParams(temperature=0.7),
             defaults=FAST, progress=False)
    assert stub_server.stats.requests == n + 1


def test_retries_with_growing_backoff(tmp_path):
    script = StubScript(faults=deque(["429", "500", "timeout", "500"]), hang_seconds=1.5)
    with StubChatServer(script) as srv:
        sleeps = []
        from prolab.describe import Retriever

        backend = make_backend("openai", "stub-model", base_url=srv.base_url, timeout=0.5)
        r = Retriever(backend, P, CallCache(tmp_path / "c.jsonl"), defaults=FAST,
                      sleep=lambda s: (sleeps.append(s), time.sleep(s)))
        res = r.run(["road"], progress=False)
        assert res.classes[0].ok
        assert srv.stats.faults_sent == {"429": 1, "500": 2, "timeout": 1}
        assert srv.stats.requests == 5 and srv.stats.completed["road"] >= 1
    assert len(sleeps) == 4
    # exponential: each pause's upper bound doubles (jitter keeps it in [0.5, 1] x bound)
    for i, s in enumerate(sleeps):
        bound = min(FAST.backoff_max, FAST.backoff_base * 2 ** i)
        assert 0.5 * bound - 1e-9 <= s <= bound + 1e-9
    assert sleeps[3] > sleeps[0]


def test_retry_after_header_is_honoured(tmp_path):
    script = StubScript(faults=deque(["429"]), retry_after=0.3)
    with StubChatServer(script) as srv:
        from prolab.describe import Retriever

        sleeps = []
        r = Retriever(_backend(srv), P, CallCache(tmp_path / "c.jsonl"), defaults=FAST,
                      sleep=lambda s: sleeps.append(s))
        assert r.run(["sky"], progress=False).classes[0].ok
    assert sleeps == [pytest.approx(0.3)]


def test_retries_exhausted_marks_class_failed(tmp_path):
    script = StubScript(faults=deque(["500"] * 10))
    with StubChatServer(script) as srv:
        d = replace(FAST, max_retries=2)
        res = retrieve(["road"], _backend(srv), P, CallCache(tmp_path / "c.jsonl"), defaults=d, progress=False)
        assert srv.stats.requests == 3
    assert "backend kept failing" in res.failures["road"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_bound(tmp_path, concurrency):
    with StubChatServer(StubScript(latency=0.2)) as srv:
        d = replace(FAST, concurrency=concurrency)
        retrieve(CLASSES, _backend(srv), P, CallCache(tmp_path / "c.jsonl"), defaults=d, progress=False)
        assert srv.stats.max_in_flight == concurrency  # reached, never exceeded


def test_replay_miss_names_class_and_prompt(tmp_path):
    with pytest.raises(ReplayMissError, match=r"1 of 1 classes with prompt structured-.*'zebra crossing'"):
        retrieve(["zebra crossing"], make_backend("replay", "some-model"), P, CallCache(tmp_path / "c.jsonl"),
                 progress=False)


def test_replay_reproduces_descriptor_file_byte_for_byte(stub_server, tmp_path):
    classes = tmp_path / "mini.txt"
    classes.write_text("road\nsky\ntraffic_light\n")
    stub_server.script.replies["sky"] = ["- too few", stub_reply("sky")]  # includes a re-ask
    live = describe_dataset(str(classes), backend=_backend(stub_server), out_root=tmp_path / "live",
                            cache_path=tmp_path / "c.jsonl", defaults=FAST, progress=False)
    # replies from an OpenAI-compatible server are keyed by its URL: replay names the same server
    replayed = describe_dataset(str(classes), backend="replay", llm="stub-model", base_url=stub_server.base_url,
                                out_root=tmp_path / "replay", cache_path=tmp_path / "c.jsonl", progress=False)
    assert live.path.name == replayed.path.name == f"stub-model__{P.tag}.json"
    assert live.path.read_bytes() == replayed.path.read_bytes()
    assert list(json.loads(live.path.read_text())) == ["road", "sky", "traffic light"]  # normalised names
    meta = json.loads(live.path.with_name(live.path.stem + ".meta.json").read_text())
    assert meta["counts"]["sky"] == 8 and meta["failures"] == {} and meta["prompt"]["id"] == P.id
    assert replayed.meta["calls"] == {"new": 0, "cached": 4}


def test_no_api_key_in_any_written_file(tmp_path, monkeypatch):
    secret = "sk-prolabtest-" + "9f8e7d6c5b4a" * 3
    monkeypatch.setenv("PROLAB_TEST_KEY", secret)
    with StubChatServer() as srv:
        out = describe_dataset("cityscapes_19", backend="openai", llm="stub-model", base_url=srv.base_url,
                               api_key_env="PROLAB_TEST_KEY", out_root=tmp_path / "d",
                               cache_path=tmp_path / "c.jsonl", defaults=FAST, progress=False)
        assert f"Bearer {secret}" in srv.stats.auth_headers  # the key was really used
    assert out.meta["backend"]["base_url"].startswith("http://127.0.0.1")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 3
    for p in written:
        assert secret not in p.read_text() and "9f8e7d6c5b4a" not in p.read_text()


def test_missing_key_for_openai_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    from prolab.describe import BackendError

    with pytest.raises(BackendError, match="NO_SUCH_KEY_VAR"):
        make_backend("openai", "gpt-4o-mini", api_key_env="NO_SUCH_KEY_VAR")


def test_openai_key_is_not_sent_to_another_server_unless_named(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "real-openai-key-for-this-test")
    with StubChatServer() as srv:
        retrieve(["road"], make_backend("openai", "stub-model", base_url=srv.base_url), P,
                 CallCache(tmp_path / "c.jsonl"), defaults=FAST, progress=False)
        assert srv.stats.auth_headers == {"Bearer not-needed"}


def test_a_failed_run_never_replaces_a_complete_file(tmp_path):
    classes = tmp_path / "two.txt"
    classes.write_text("road\nsky\n")
    with StubChatServer() as srv:
        good = describe_dataset(str(classes), backend=_backend(srv), out_root=tmp_path / "d",
                                cache_path=tmp_path / "c.jsonl", defaults=FAST, progress=False)
    before = good.path.read_bytes()
    with StubChatServer(StubScript(faults=deque(["500"] * 50))) as srv:
        bad = describe_dataset(str(classes), backend=_backend(srv), prompt="naive", out_root=tmp_path / "d",
                               cache_path=tmp_path / "c2.jsonl", defaults=replace(FAST, max_retries=1),
                               progress=False)
        assert bad.result.failures  # new prompt, server down: every class failed
    # same prompt again with the server down is answered from the cache: nothing fails, nothing is lost
    assert good.path.read_bytes() == before
    with StubChatServer(StubScript(faults=deque(["500"] * 50))) as srv:
        worse = describe_dataset(str(classes), backend=_backend(srv), out_root=tmp_path / "d",
                                 cache_path=tmp_path / "empty.jsonl", defaults=replace(FAST, max_retries=1),
                                 progress=False)
    assert worse.path.name.endswith(".partial.json") and good.path.read_bytes() == before
