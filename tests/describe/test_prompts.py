import dataclasses

import pytest

from prolab.describe import load_prompt
from prolab.describe.prompts import _validate


def test_structured_prompt_renders_examples_as_turns_and_class_last():
    p = load_prompt("structured")
    msgs = p.render("traffic light")
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 4 + ["user"]
    assert msgs[-1]["content"] == "traffic light"  # the class comes last so the shared prefix is reused
    assert [m["content"] for m in msgs[1:-1:2]] == ["lighthouse", "meadow", "teapot", "tractor"]
    # the five-part structure is in the instructions
    for part in ("general terms", "shape", "material", "commonly come with", "where it is usually found"):
        assert part in msgs[0]["content"]
    assert len(p.example_lines()) == 32


def test_single_message_prompt():
    p = load_prompt("structured_single")
    msgs = p.render("traffic light")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"].rstrip().endswith("traffic light") and "lighthouse" in msgs[1]["content"]
    assert len(p.example_lines()) >= 30


def test_prompt_id_tracks_content_not_notes():
    p = load_prompt("structured")
    assert p.tag == f"structured-{p.id}" and len(p.id) == 8
    assert dataclasses.replace(p, provenance="other notes").id == p.id
    assert dataclasses.replace(p, template=p.template + "\nBe brief.").id != p.id
    assert dataclasses.replace(p, system="x").id != p.id
    assert dataclasses.replace(p, examples=p.examples[:2]).id != p.id
    assert load_prompt("naive").id != p.id
    assert load_prompt("structured").id == p.id  # stable across loads


def test_prompt_by_path(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nsystem: s\ntemplate: 'Tell me about {class_name}.'\n")
    p = load_prompt(f)
    assert p.name == "mine" and p.render("cat")[1]["content"] == "Tell me about cat."


@pytest.mark.parametrize("template,msg", [
    ("no field here", "exactly once"),
    ("{class_name} and {other}", "exactly once"),
    ("{class_name} {class_name}", "exactly once"),
])
def test_bad_templates_are_rejected(template, msg):
    with pytest.raises(ValueError, match=msg):
        _validate({"name": "x", "template": template}, "x.yaml")


def test_unknown_prompt_lists_available():
    with pytest.raises(FileNotFoundError, match="structured"):
        load_prompt("does-not-exist")


def test_bad_reply_format(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("name: p\ntemplate: '{class_name}'\nreply_format: poem\n")
    with pytest.raises(ValueError, match="reply_format 'poem'"):
        load_prompt(f)


def test_the_release_prompt_facts_sit_beside_what_each_prompt_file_says(tmp_path):
    """The kit's columns are read from the files: an edited prompt shows in the table, the release's column is
    the facts of prolab.paper."""
    from prolab import paper
    from prolab.describe import prompt_comparison

    f = tmp_path / "mine.yaml"
    f.write_text('name: mine\nsystem: "Be brief."\ntemplate: |\n  1. colour;\n  2. shape.\n  Write 3 to 4 lines.\n'
                 '  kettle\n  - a metal pot\n  - a spout\n\n  chair\n  - four legs\n  Now {class_name}.\n')
    table = prompt_comparison(["structured", str(f)]).data
    release = table["the release (facts)"]
    assert release["worked examples"] == ", ".join(paper.RELEASE_PROMPT.examples)
    assert release["content, in order"].startswith("5 parts: a general description")
    mine = table[str(f)]
    assert mine["content, in order"] == "2 parts: colour; shape"
    assert mine["worked examples"] == "kettle, chair" and mine["lines per example"] == "1-2"
    assert mine["lines asked for"] == "3-4" and mine["system message"] == "Be brief."
    assert mine["examples given as"].startswith("written out in the prompt")
    ours = table["structured"]
    assert ours["examples given as"].startswith("earlier chat turns") and ours["worked examples"].count(",") == 3
