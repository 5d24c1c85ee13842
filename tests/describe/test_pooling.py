"""Pooled replies (opt-in): a class with too few descriptions is asked again with seeded sampling and the
descriptions of its replies are pooled without duplicates; the defaults make exactly the calls they always made."""
import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from prolab.describe import (Backend, CallCache, ParseDefaults, RetrievalDefaults, Retriever, describe_dataset,
                             descriptions_table, load_meta, load_prompt, make_backend, replay_settings, retrieve)
from prolab.describe.stub_server import StubChatServer, StubScript, _class_of, stub_reply

P = load_prompt("structured")
FAST = RetrievalDefaults(backoff_base=0.01, backoff_max=0.05)


def bullets(*lines):
    return "\n".join(f"- {line}" for line in lines)


def lines(prefix, n, start=0):
    """n distinct descriptions that no string-similarity rule merges."""
    words = ["granite", "velvet", "copper", "meadow", "harbour", "lantern", "saddle", "thimble", "orchard",
             "glacier", "walnut", "pepper", "quartz", "bramble", "cobalt", "tundra", "falcon", "marble", "ember",
             "willow", "canyon", "saffron", "pebble", "juniper", "magnet", "violet", "tangerine", "hazel"]
    return [f"{prefix} {words[i]} {words[(7 * i + 3) % len(words)]} detail" for i in range(start, start + n)]


class FakeBackend(Backend):
    """Scripted in-process backend: ``replies[name]`` is a list popped per question, then the stub's list."""
    kind = "fake"

    def __init__(self, replies=None):
        self.model_id = "fake-model"
        self.max_concurrency = 1
        self.replies = {k: list(v) for k, v in (replies or {}).items()}
        self.calls = []            # (name, params)

    def complete(self, messages, params):
        name = _class_of(messages)
        self.calls.append((name, params))
        q = self.replies.get(name)
        return q.pop(0) if q else stub_reply(name)

    def n(self, name):
        return sum(1 for c, _ in self.calls if c == name)


GROUPS = {"dark asphalt covering": 0, "black tarmac surface layer": 0}


def fake_embedder(texts):
    """Two phrasings of one idea share a vector; every other text gets a one-hot of its own."""
    out = np.zeros((len(texts), 4096 + 8))
    for i, t in enumerate(texts):
        g = GROUPS.get(t)
        out[i, g if g is not None else 8 + int(hashlib.sha256(t.encode()).hexdigest(), 16) % 4096] = 1.0
    return out


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _retriever(tmp_path, backend, **kw):
    emb = kw.pop("embedder", None)
    return Retriever(backend, P, CallCache(tmp_path / "c.jsonl"), defaults=replace(FAST, **kw), embedder=emb,
                     sleep=lambda s: None)


def test_a_short_class_is_sampled_until_min_pooled(tmp_path):
    first, s1, s2 = lines("road", 7), lines("road", 2, 7), lines("road", 4, 9)
    fake = FakeBackend({"road": [bullets(*first), bullets(*s1), bullets(*s2), bullets(*lines("road", 5, 13))]})
    res = _retriever(tmp_path, fake, min_pooled=10).run(["road"], progress=False)
    r = res.classes[0]
    # 7 -> 9 after sample 1 -> 13 after sample 2: stop (the whole reply that got it there is kept)
    assert r.ok and r.samples == 2 and r.descriptions == first + s1 + s2
    assert fake.n("road") == 3 and r.new_calls == 3 and res.samples == {"road": 2}
    # every sample: the first question again, sampled, with a seed of its own
    (_, p0), (_, p1), (_, p2) = fake.calls
    assert p0.temperature == 0.0 and p0.seed == 0
    assert (p1.temperature, p1.seed) == (0.7, 101) and (p2.temperature, p2.seed) == (0.7, 102)
    recs = [x for x in CallCache(tmp_path / "c.jsonl").records() if x.get("sample")]
    assert sorted(x["sample"] for x in recs) == [1, 2] and {x["params"]["seed"] for x in recs} == {101, 102}


def test_a_four_line_first_reply_is_pooled_and_no_longer_fails(tmp_path):
    fake = FakeBackend({"tank": [bullets(*lines("tank", 4)), bullets(*lines("tank", 5, 4)),
                                 bullets(*lines("tank", 5, 9))]})
    r = _retriever(tmp_path, fake, max_attempts=1, min_pooled=8).run(["tank"], progress=False).classes[0]
    assert r.attempts == 1 and r.samples == 1 and len(r.descriptions) == 9 and r.ok
    # without pooling the same reply is a failed class with 4 descriptions
    r0 = _retriever(tmp_path / "b", FakeBackend({"tank": [bullets(*lines("tank", 4))]}),
                    max_attempts=1).run(["tank"], progress=False).classes[0]
    assert not r0.ok and len(r0.descriptions) == 4 and r0.samples == 0


def test_a_class_with_enough_descriptions_costs_no_extra_call(tmp_path):
    fake = FakeBackend({"sky": [bullets(*lines("sky", 10))], "road": [bullets(*lines("road", 7))]})
    res = _retriever(tmp_path, fake, min_pooled=10).run(["sky", "road"], progress=False)
    assert fake.n("sky") == 1 and res.classes[0].samples == 0 and len(res.descriptions["sky"]) == 10
    assert fake.n("road") > 1 and res.samples == {"road": res.classes[1].samples}


def test_duplicates_are_dropped_exact_and_by_embedding(tmp_path):
    first = lines("road", 6) + ["dark asphalt covering"]
    sample = ["ROAD granite " + first[0].split(" ", 2)[2] + "!",   # the first line again, other case/punctuation
              "black tarmac surface layer",                      # same idea, other words: the embedder's call
              *lines("road", 3, 6)]
    fake = FakeBackend({"road": [bullets(*first), bullets(*sample)]})
    r = _retriever(tmp_path, fake, min_pooled=10, max_samples=1, embedder=fake_embedder).run(
        ["road"], progress=False).classes[0]
    assert r.descriptions == first + lines("road", 3, 6)
    # without an embedder only the exact duplicate goes
    fake2 = FakeBackend({"road": [bullets(*first), bullets(*sample)]})
    r2 = _retriever(tmp_path / "b", fake2, min_pooled=10, max_samples=1).run(["road"], progress=False).classes[0]
    assert r2.descriptions == first + ["black tarmac surface layer"] + lines("road", 3, 6)


def test_the_cap_holds(tmp_path):
    fake = FakeBackend({"road": [bullets(*lines("road", 7)), bullets(*lines("road", 12, 7))]})
    r = _retriever(tmp_path, fake, min_pooled=14).run(["road"], progress=False).classes[0]
    assert len(r.descriptions) == ParseDefaults().max_descriptions == 15 and r.samples == 1
    small = replace(FAST, parse=ParseDefaults(max_descriptions=9))
    with pytest.raises(ValueError, match="min_pooled"):
        replace(small, min_pooled=10)


def test_max_samples_bounds_the_calls(tmp_path):
    one = lines("road", 7)
    fake = FakeBackend({"road": [bullets(*one)] + [bullets(*one)] * 5})   # samples bring nothing new
    r = _retriever(tmp_path, fake, min_pooled=12, max_samples=3).run(["road"], progress=False).classes[0]
    assert r.samples == 3 and fake.n("road") == 4 and r.descriptions == one and r.ok


def test_replay_reproduces_the_pooled_file_byte_for_byte(tmp_path):
    classes = tmp_path / "mini.txt"
    classes.write_text("road\nsky\ntraffic_light\n")
    fake = FakeBackend({"road": [bullets(*lines("road", 6)), bullets(*(lines("road", 2) + lines("road", 3, 6)))],
                        "sky": [bullets(*lines("sky", 7)), bullets("dark asphalt covering", *lines("sky", 1, 7)),
                                bullets("black tarmac surface layer", *lines("sky", 4, 8))]})
    d = replace(FAST, min_pooled=10)
    live = describe_dataset(str(classes), backend=fake, out_root=tmp_path / "live", cache_path=tmp_path / "c.jsonl",
                            defaults=d, embedder=fake_embedder, progress=False)
    meta = load_meta(live.path)
    # traffic light: the stub's 8 lines, and every sample repeats them: all 4 samples, nothing gained
    assert meta["pooling"]["samples"] == {"road": 2, "sky": 2, "traffic light": 4}
    assert json.loads(live.path.read_text())["sky"][7:9] == ["dark asphalt covering", lines("sky", 1, 7)[0]]
    assert meta["pooling"]["min_pooled"] == 10 and meta["pooling"]["embedder"] == "fake_embedder"
    n_live = len(fake.calls)
    rep = describe_dataset(str(classes), backend="replay", llm="fake-model", out_root=tmp_path / "replay",
                           cache_path=tmp_path / "c.jsonl", defaults=d, embedder=fake_embedder, progress=False)
    assert rep.path.read_bytes() == live.path.read_bytes()
    assert rep.meta["calls"] == {"new": 0, "cached": n_live}
    # the sidecar says how to replay it
    settings = replay_settings(meta)
    assert settings["defaults"].min_pooled == 10 and settings["embedder"] == "fake_embedder"
    settings["embedder"] = fake_embedder
    again = describe_dataset(str(classes), backend="replay", llm="fake-model", out_root=tmp_path / "again",
                             cache_path=tmp_path / "c.jsonl", progress=False, **settings)
    assert again.path.read_bytes() == live.path.read_bytes()
    t = descriptions_table(live.path)
    counts = {c: len(v) for c, v in json.loads(live.path.read_text()).items()}
    assert (t["min"], t["max"], t["classes"]) == (min(counts.values()), max(counts.values()), 3)
    assert t["failed"] == {} and t["pooled_classes"] == 3 and t["samples"] == 8
    assert t["fewer_than_8"] == {}


def test_defaults_make_exactly_the_calls_they_made_before(tmp_path):
    """min_pooled = 0 (the default): one question per class plus the corrective re-asks, nothing else, even for
    classes far below any pooling target and with an embedder given."""
    script = StubScript(replies={"sky": ["- too\n- few", stub_reply("sky")],
                                 "road": [bullets(*lines("road", 6))]})
    with StubChatServer(script) as srv:
        backend = make_backend("openai", "stub-model", base_url=srv.base_url)
        res = retrieve(["road", "sky", "tree"], backend, P, CallCache(tmp_path / "c.jsonl"), defaults=FAST,
                       progress=False, embedder=fake_embedder)
        assert srv.stats.requests == 4 and dict(srv.stats.completed) == {"road": 1, "sky": 2, "tree": 1}
    assert res.samples == {} and all(c.samples == 0 for c in res.classes)
    assert not any("sample" in x for x in CallCache(tmp_path / "c.jsonl").records())
    assert "sampled" not in res.summary()
    fake = FakeBackend()
    out = describe_dataset("cityscapes_19", backend=fake, out_root=tmp_path / "d", cache_path=tmp_path / "c2.jsonl",
                           progress=False)
    assert len(fake.calls) == 19 and "pooling" not in out.meta and "prompt_names" not in out.meta


def test_bad_settings_are_refused():
    for kw in ({"min_pooled": -1}, {"min_pooled": 16}, {"max_samples": 0}, {"dedup_threshold": 0.0},
               {"dedup_threshold": 1.5}, {"pool_temperature": 0.0}):
        with pytest.raises(ValueError):
            RetrievalDefaults(**kw)


def test_samples_missing_from_the_cache_are_a_replay_miss_with_the_fill_command(tmp_path):
    from prolab.describe import ReplayMissError

    classes = tmp_path / "mini.txt"
    classes.write_text("road\n")
    describe_dataset(str(classes), backend=FakeBackend(), out_root=tmp_path / "d", cache_path=tmp_path / "c.jsonl",
                     defaults=FAST, progress=False)              # first questions only
    with pytest.raises(ReplayMissError, match=r"(?s)'road'.*--min_pooled 12 --max_samples 2 "
                                              r"--pool_embedder all-MiniLM-L6-v2"):
        describe_dataset(str(classes), backend="replay", llm="fake-model", out_root=tmp_path / "r",
                         cache_path=tmp_path / "c.jsonl", defaults=replace(FAST, min_pooled=12, max_samples=2),
                         embedder="all-MiniLM-L6-v2", progress=False)
