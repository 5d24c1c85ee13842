from prolab.describe import load_prompt, parse_reply
from prolab.describe.parsing import reask_message

P = load_prompt("structured")
GOOD = """- A paved strip for vehicles
- Long, flat and horizontal
- Made of asphalt or concrete
- Dark grey or black
- Painted white lane markings
- Bordered by curbs and sidewalks
- Seen at the bottom of street scenes"""


def test_good_reply():
    r = parse_reply(GOOD, "road", P)
    assert r.problem is None
    assert r.descriptions[0] == "A paved strip for vehicles" and len(r.descriptions) == 7


def test_header_nesting_labels_and_numbering_are_flattened():
    reply = """Here is the list:
- Road:
  - A paved strip for vehicles.
  - **Shape:** long, flat and horizontal surface
  * Material: made of asphalt or concrete
  1. Dark grey or black
  2) Painted white lane markings
- Colour: grey
- Bordered by curbs and sidewalks"""
    r = parse_reply(reply, "road", P)
    assert r.problem is None
    assert "Road:" in r.dropped
    assert r.descriptions[:4] == ["A paved strip for vehicles", "long, flat and horizontal surface",
                                  "made of asphalt or concrete", "Dark grey or black"]
    assert "Colour: grey" in r.descriptions  # a short labelled phrase keeps its label


def test_empty_refusal_and_too_few():
    assert parse_reply("", "road", P).problem == "empty reply"
    assert parse_reply("I'm sorry, but I cannot help with that.", "road", P).problem == "refusal"
    r = parse_reply("- one thing\n- another thing", "road", P)
    assert r.problem.startswith("too few") and r.descriptions == ["one thing", "another thing"]
    assert parse_reply("Roads are paved.", "road", P).problem == "no bullet lines"


def test_loop_is_detected():
    reply = "- A paved strip\n" + "- Can be found in different types of soil\n" * 12
    r = parse_reply(reply, "road", P)
    assert r.problem == "repetition"
    assert r.descriptions == ["A paved strip", "Can be found in different types of soil"]


def test_near_duplicates_collapse():
    reply = GOOD + "\n- Made of asphalt or concrete.\n- made of asphalt or of concrete"
    r = parse_reply(reply, "road", P)
    assert len(r.descriptions) == 7


def test_example_copy_is_an_echo():
    # the model copies the "meadow" worked example for a different class: copied lines are dropped
    meadow = P.examples[1][1].strip().splitlines()
    r = parse_reply("\n".join(meadow), "grass", P)
    assert r.problem == "prompt echoed" and r.descriptions == []
    # two original lines among copies survive, but are too few
    r = parse_reply("- Green blades of grass\n- Grows on lawns\n" + "\n".join(meadow), "grass", P)
    assert r.problem == "prompt echoed" and r.descriptions == ["Green blades of grass", "Grows on lawns"]
    # a single copied line among enough original ones is dropped and the reply is usable
    r = parse_reply(GOOD + "\n" + meadow[0], "road", P)
    assert r.problem is None and len(r.descriptions) == 7


def test_instruction_echo():
    reply = P.render("road")[0]["content"]
    assert parse_reply(reply, "road", P).problem == "prompt echoed"


def test_long_lines_dropped():
    reply = GOOD + "\n- " + " ".join(["word"] * 40)
    r = parse_reply(reply, "road", P)
    assert len(r.descriptions) == 7 and len(r.dropped) == 1


def test_naive_prompt_splits_sentences():
    naive = load_prompt("naive")
    prose = ("A road is a wide way leading from one place to another. It is usually paved with asphalt. "
             "Roads carry cars and trucks.\n\nMany roads have painted lines. Some are lit at night. "
             "They are bordered by sidewalks.")
    r = parse_reply(prose, "road", naive)
    assert r.problem is None and len(r.descriptions) == 6
    assert r.descriptions[1] == "It is usually paved with asphalt"


def test_reask_message_keeps_format():
    assert '"- "' in reask_message("road", "too few descriptions (3)", P)
    assert "sentences" in reask_message("road", "too few descriptions (3)", load_prompt("naive"))
