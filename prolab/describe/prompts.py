"""Prompts as versioned files (``descriptors/prompts/<name>.yaml``) with a stable content id."""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..files import read_yaml_mapping, stable_hash

REPLY_FORMATS = ("bullets", "sentences")


@dataclass(frozen=True)
class Prompt:
    name: str
    system: str
    template: str               # contains the single field {class_name}
    reply_format: str = "bullets"
    examples: tuple[tuple[str, str], ...] = ()  # worked examples as earlier chat turns: (class_name, reply)
    version: int = 1
    provenance: str = ""
    source: str = ""            # file it was read from

    @property
    def id(self) -> str:
        """Hash of what the model sees (system message, template, reply format): edits change it, notes don't."""
        content = {"system": self.system, "template": self.template, "format": self.reply_format}
        if self.examples:
            content["examples"] = [list(e) for e in self.examples]
        return stable_hash(content, length=8)

    @property
    def tag(self) -> str:
        """Name and id, as used in descriptor file names: ``structured-1a2b3c4d``."""
        return f"{self.name}-{self.id}"

    def render(self, class_name: str) -> list[dict[str, str]]:
        """Chat messages for one class."""
        messages = [{"role": "system", "content": self.system.strip()}] if self.system.strip() else []
        for name, reply in self.examples:
            messages += [{"role": "user", "content": self.template.format(class_name=name).strip()},
                         {"role": "assistant", "content": reply.strip()}]
        return messages + [{"role": "user", "content": self.template.format(class_name=class_name).strip()}]

    def _text_lines(self) -> list[str]:
        return (self.system + "\n" + self.template + "\n" + "\n".join(r for _, r in self.examples)).splitlines()

    def example_lines(self) -> set[str]:
        """Bullet lines of the worked examples, normalised: a reply repeating them is an echo."""
        return {norm_text(line[2:]) for line in self._text_lines() if line.startswith("- ")}

    def instruction_lines(self) -> list[str]:
        """Non-example lines of the prompt of some length: a reply quoting them is an echo."""
        return [norm_text(l) for l in self._text_lines()
                if len(l.split()) >= 6 and not l.startswith("- ") and "{" not in l]


def norm_text(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower()).strip()


def _validate(d: dict, source: str) -> Prompt:
    for field in ("name", "template"):
        if not isinstance(d.get(field), str) or not d[field].strip():
            raise ValueError(f"prompt file {source}: field {field!r} is missing or empty")
    # the name becomes part of descriptor file names: a path component, verbatim (no "../", no "/")
    paths.component(d["name"], f"prompt file {source}: name")
    fields = [f for _, f, _, _ in string.Formatter().parse(d["template"]) if f is not None]
    if fields != ["class_name"]:
        raise ValueError(f"prompt file {source}: the template must contain {{class_name}} exactly once "
                         f"and no other field, found {fields}")
    fmt = d.get("reply_format", "bullets")
    if fmt not in REPLY_FORMATS:
        raise ValueError(f"prompt file {source}: reply_format {fmt!r} is not one of {REPLY_FORMATS}")
    examples = []
    for i, ex in enumerate(d.get("examples") or []):
        if not (isinstance(ex, dict) and isinstance(ex.get("class_name"), str) and isinstance(ex.get("reply"), str)):
            raise ValueError(f"prompt file {source}: example {i} needs string fields class_name and reply")
        examples.append((ex["class_name"], ex["reply"]))
    return Prompt(name=d["name"], system=d.get("system", "") or "", template=d["template"], reply_format=fmt,
                  examples=tuple(examples),
                  version=int(d.get("version", 1)), provenance=(d.get("provenance") or "").strip(), source=source)


def load_prompt(name_or_path: str | Path) -> Prompt:
    """A prompt by name (``structured``, ``naive``: files in ``descriptors/prompts/``) or by path."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = paths.prompt_path(str(name_or_path))
    if not p.exists():
        known = sorted(f.stem for f in paths.prompts_dir().glob("*.yaml"))
        raise FileNotFoundError(f"prompt {name_or_path!r} not found at {p}; available prompts: {known}")
    return _validate(read_yaml_mapping(p, "prompt file"), str(p))


def available_prompts() -> list[str]:
    return sorted(f.stem for f in paths.prompts_dir().glob("*.yaml"))


def prompts_overview(names: list[str], styled: bool = True):
    """A table of prompts: id, version, reply format, number of worked examples, provenance (``styled``: long
    texts wrap instead of being cut at pandas' 50 characters)."""
    import pandas as pd

    rows = []
    for n in names:
        p = load_prompt(n)
        rows.append({"prompt": p.name, "id": p.id, "version": p.version, "reply_format": p.reply_format,
                     "examples": (f"{len(p.examples)} chat turns" if p.examples
                                  else "inline" if p.example_lines() else "none"),
                     "provenance": p.provenance})
    df = pd.DataFrame(rows).set_index("prompt")
    if not styled:
        return df
    return df.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left", "vertical-align": "top"})


def _numbered_parts(text: str) -> list[str]:
    return [m.strip().rstrip(";.") for m in re.findall(r"^\s*\d+\.\s*(.+)$", text, re.M)]


def _lines_asked(text: str) -> str:
    m = re.search(r"(\d+)\s*(?:to|-)\s*(\d+)\s+lines", text)
    return f"{m.group(1)}-{m.group(2)}" if m else "not stated"


def _inline_examples(text: str) -> list[tuple[str, int]]:
    """Worked examples written into the prompt text: a name line followed by its "- " lines."""
    out, lines = [], [l.strip() for l in text.splitlines()]
    for i, line in enumerate(lines):
        if line and not line.startswith("- ") and i + 1 < len(lines) and lines[i + 1].startswith("- "):
            n = 0
            while i + 1 + n < len(lines) and lines[i + 1 + n].startswith("- "):
                n += 1
            out.append((line, n))
    return out


def prompt_comparison(names: list[str]):
    """The release's description prompt (facts from ``prolab.paper.RELEASE_PROMPT``) beside the kit's prompts,
    one row per aspect; the kit's columns are read from the prompt files, so an edited prompt shows here."""
    import pandas as pd

    from ..paper import RELEASE_PROMPT as R

    rows = {"content, in order": [f"{len(R.content_order)} parts: " + "; ".join(R.content_order)],
            "worked examples": [", ".join(R.examples)],
            "lines per example": [R.lines_per_example],
            "examples given as": [R.examples_as],
            "lines asked for": [R.lines_asked],
            "system message": [R.system],
            "reply kept": [R.kept]}
    for n in names:
        p = load_prompt(n)
        parts = _numbered_parts(p.system + "\n" + p.template)
        turns = [(c, sum(l.strip().startswith("- ") for l in reply.splitlines())) for c, reply in p.examples]
        inline = _inline_examples(p.system + "\n" + p.template)
        examples = turns or inline
        counts = [n for _, n in examples]
        rows["content, in order"].append(f"{len(parts)} parts: " + "; ".join(parts) if parts else "no order given")
        rows["worked examples"].append(", ".join(c for c, _ in examples) or "none")
        rows["lines per example"].append(f"{min(counts)}-{max(counts)}" if counts else "-")
        rows["examples given as"].append("earlier chat turns (user: the name, assistant: the list)" if turns
                                         else "written out in the prompt, after the instructions" if inline
                                         else "-")
        rows["lines asked for"].append(_lines_asked(p.system + "\n" + p.template))
        rows["system message"].append(p.system.strip().splitlines()[0] if p.system.strip() else "none")
        rows["reply kept"].append("lines that start with '- ', the prefix stripped" if p.reply_format == "bullets"
                                  else "the reply split into sentences")
    df = pd.DataFrame.from_dict(rows, orient="index", columns=["the release (facts)", *names])
    df.attrs.update(source=R.source)
    return df.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left", "vertical-align": "top"})
