"""Prompt names: ambiguous or unreadable mmseg class names are asked under a sense-giving name (opt-in); the
descriptor files stay keyed by the mmseg names and replay byte for byte."""
import json

import pytest

from prolab import load_class_names
from prolab.datasets import class_key
from prolab.describe import Backend, describe_dataset, load_meta, prompt_name, prompt_names, replay_settings
from prolab.describe.senses import prompt_name_datasets
from prolab.describe.stub_server import _class_of, stub_reply

# how many classes each dataset maps: the mapping is meant to stay small (see prompt_names/README.md)
COUNTS = {"ade20k_150": 14, "coco_stuff_171": 34, "pascal_context_59": 4, "cityscapes_19": 1, "bdd100k_19": 1}


class FakeBackend(Backend):
    """In-process backend: answers every question with the stub's bullet list for the name asked, and records
    what it was asked."""
    kind = "fake"

    def __init__(self, model_id: str = "fake-model"):
        self.model_id = model_id
        self.max_concurrency = 1
        self.asked: list[str] = []
        self.messages: list[list[dict]] = []

    def complete(self, messages, params):
        name = _class_of(messages)
        self.asked.append(name)
        self.messages.append(messages)
        return stub_reply(name)


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)  # replay of the fake backend's calls has no server scope


def test_ade20k_tank_and_blind_get_their_sense():
    assert prompt_name("ade20k_150", "tank") == "storage tank"
    assert prompt_name("ade20k_150", "blind") == "window blind"
    assert prompt_name("ade20k_150", "wall") == "wall"           # unmapped: its own name
    assert prompt_name("ade20k_150", "bed ") == "bed"            # mmseg's trailing space is normalised
    assert prompt_name("coco_stuff_171", "wall-brick") == "brick wall"
    assert prompt_name("pascal_context_59", "tvmonitor") == "tv monitor"
    assert prompt_name("pascal_context_59", "pottedplant") == "potted plant"
    assert prompt_names("synthetic_outdoor") == {}


def test_every_registered_dataset_with_a_file_is_covered():
    assert set(prompt_name_datasets()) == set(COUNTS)


@pytest.mark.parametrize("dataset", sorted(COUNTS))
def test_every_mapped_name_is_a_class_of_its_dataset(dataset):
    classes = load_class_names(dataset)
    names = prompt_names(dataset)
    assert len(names) == COUNTS[dataset] and len(names) <= len(classes) // 4
    assert set(names) <= set(classes), set(names) - set(classes)
    assert list(names) == [c for c in classes if c in names]    # kept in class order
    for c, p in names.items():
        assert p.strip() and p != c
    # two classes never share a question, and no class is asked under another class's own name
    asked = [class_key(names.get(c, c)) for c in classes]
    assert len(set(asked)) == len(classes)


def _describe(dataset, backend, tmp_path, sub, cache="c.jsonl", **kw):
    return describe_dataset(dataset, backend=backend, out_root=tmp_path / sub, cache_path=tmp_path / cache,
                            progress=False, **kw)


def test_prompt_names_are_asked_and_the_file_stays_keyed_by_mmseg_names(tmp_path):
    fake = FakeBackend()
    out = _describe("ade20k_150", fake, tmp_path, "live", prompt_names=True)
    assert "storage tank" in fake.asked and "window blind" in fake.asked
    assert "tank" not in fake.asked and "blind" not in fake.asked
    assert len(fake.asked) == 150                               # one question per class, as without names
    # the rendered prompt's last turn is the prompt name
    i = fake.asked.index("storage tank")
    assert fake.messages[i][-1] == {"role": "user", "content": "storage tank"}
    data = json.loads(out.path.read_text())
    assert list(data) == load_class_names("ade20k_150")          # keyed by the mmseg names, in class order
    assert data["tank"][0].startswith("storage tank ") and data["blind"][0].startswith("window blind ")
    meta = load_meta(out.path)
    assert meta["prompt_names"] == prompt_names("ade20k_150") and meta["prompt_names"]["tank"] == "storage tank"
    assert out.result.queries == prompt_names("ade20k_150")

    # replay: the same names again, from the cache only, byte for byte (also from the sidecar's record)
    rep = _describe("ade20k_150", "replay", tmp_path, "replay", llm="fake-model", prompt_names=True)
    assert rep.path.read_bytes() == out.path.read_bytes() and rep.meta["calls"]["new"] == 0
    again = _describe("ade20k_150", "replay", tmp_path, "replay2", llm="fake-model", **replay_settings(meta))
    assert again.path.read_bytes() == out.path.read_bytes()


def test_default_asks_the_bare_names_and_records_nothing(tmp_path):
    fake = FakeBackend()
    out = _describe("cityscapes_19", fake, tmp_path, "plain")
    assert fake.asked == load_class_names("cityscapes_19")       # exactly the calls made before the feature
    assert "prompt_names" not in out.meta and "pooling" not in out.meta
    assert replay_settings(out.meta) == {}
    named = FakeBackend()
    out2 = _describe("cityscapes_19", named, tmp_path, "named", cache="c2.jsonl", prompt_names=True)
    assert named.asked == [prompt_name("cityscapes_19", c) for c in load_class_names("cityscapes_19")]
    assert out2.meta["prompt_names"] == {"rider": "bicycle or motorcycle rider"}
    assert list(json.loads(out2.path.read_text())) == load_class_names("cityscapes_19")


def test_a_mapping_for_an_unknown_class_is_an_error(tmp_path):
    classes = tmp_path / "mini.txt"
    classes.write_text("road\nsky\n")
    with pytest.raises(ValueError, match="'tank'"):
        _describe(str(classes), FakeBackend(), tmp_path, "x", prompt_names={"tank": "storage tank"})
    fake = FakeBackend()
    out = _describe(str(classes), fake, tmp_path, "y", prompt_names={"sky": "open sky"})
    assert fake.asked == ["road", "open sky"] and out.meta["prompt_names"] == {"sky": "open sky"}
    # a file name that matches no prompt-name file: True maps nothing
    assert _describe(str(classes), FakeBackend(), tmp_path, "z", prompt_names=True).meta.get("prompt_names") is None


def test_a_replay_miss_names_the_prompt_name_and_the_fill_command_repeats_it(tmp_path):
    from prolab.describe import ReplayMissError

    with pytest.raises(ReplayMissError) as e:
        _describe("cityscapes_19", "replay", tmp_path, "r", llm="fake-model", prompt_names=True)
    assert "'rider' (asked as 'bicycle or motorcycle rider')" in str(e.value)
    assert str(e.value).rstrip().endswith("--prompt_names")
