"""Turning a raw LLM reply into a clean list of descriptions, and deciding whether to ask again.

Small local models drift from the requested format: a header line naming the class ("- Grass:"), sub-bullets
indented under it, "Material: ..." prefixes, numbered lists, loops that repeat one line until max_tokens.
``parse_reply`` flattens all of that; ``check_reply`` names what is still wrong so the engine can re-ask.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from .prompts import Prompt, norm_text

_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2013]|\d{1,2}[.)])\s+(.*\S)\s*$")
_LABEL = re.compile(r"^([A-Za-z][A-Za-z /&-]{0,30}):\s+(.+)$")     # "Material: made of steel"
_MD = re.compile(r"(\*\*|__|`)")
_REFUSAL = re.compile(r"\b(i'?m sorry|i am sorry|i cannot|i can't|as an ai|i'm unable|i am unable|"
                      r"cannot assist|can't help with)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class ParseDefaults:
    min_descriptions: int = 6    # fewer than this after cleaning -> re-ask
    max_descriptions: int = 15   # the release has 8-15 per class; keep the first 15
    max_words: int = 30          # longer lines are run-on text, not a property
    max_chars: int = 200         # likewise in characters (a 50 KB "word" is not a description)
    max_reply_chars: int = 16_000  # a longer reply is a bad reply (and is stored cut to this length)
    near_duplicate: float = 0.9  # SequenceMatcher ratio above which two lines count as one


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def sanitize_reply(reply: str | bytes | None) -> str:
    """The one path every reply text takes before it is parsed or cached: undecodable bytes and lone
    surrogates become U+FFFD, control characters (NUL ...) are dropped, line ends are normalised."""
    if reply is None:
        return ""
    if isinstance(reply, (bytes, bytearray)):
        text = bytes(reply).decode("utf-8", errors="replace")
    else:
        text = str(reply).encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass
class ParsedReply:
    descriptions: list[str]
    problem: str | None = None      # None when the reply is usable
    dropped: list[str] = field(default_factory=list)


def _clean_line(text: str) -> str:
    text = _MD.sub("", text).strip()
    m = _LABEL.match(text)
    if m and len(m.group(1).split()) <= 3 and len(m.group(2).split()) >= 4:
        text = m.group(2).strip()  # "Material: made of painted steel" -> the phrase; short ones keep the label
    text = text.strip(" \t\"'")
    text = re.sub(r"\s+", " ", text)
    return text.rstrip(".;,").strip()


def _is_header(text: str, class_name: str) -> bool:
    """A line that only names the class ("Grass:", "**Road**", "Description of a car:")."""
    t = norm_text(_MD.sub("", text))
    c = norm_text(class_name)
    if text.rstrip().endswith(":") and len(t.split()) <= 6:
        return True
    return t in (c, c + "s", f"a {c}", f"an {c}", f"the {c}")


def _candidate_lines(reply: str, class_name: str, reply_format: str) -> list[str]:
    lines = reply.replace("\r\n", "\n").split("\n")
    if reply_format == "bullets":
        out = []
        for line in lines:
            m = _BULLET.match(line)
            if m:
                out.append(m.group(1))
        return out
    # sentences: the reply is prose (or occasionally a list); split paragraphs into sentences
    out = []
    for line in lines:
        m = _BULLET.match(line)
        body = m.group(1) if m else line.strip()
        if not body or _is_header(body, class_name):
            continue
        out.extend(s for s in _SENTENCE.split(body) if s.strip())
    return out


def parse_reply(reply: str, class_name: str, prompt: Prompt, defaults: ParseDefaults = ParseDefaults()
                ) -> ParsedReply:
    """Clean descriptions from one reply, plus the first problem found (or None)."""
    reply = sanitize_reply(reply)
    if not reply.strip():
        return ParsedReply([], "empty reply")
    if len(reply) > defaults.max_reply_chars:
        return ParsedReply([], f"reply too long ({len(reply)} characters)")
    if _REFUSAL.search(reply[:300]):
        return ParsedReply([], "refusal")
    instruction = prompt.instruction_lines()
    flat = norm_text(reply)
    if sum(1 for l in instruction if l and l in flat) >= 2:
        return ParsedReply([], "prompt echoed")

    examples = prompt.example_lines()
    kept: list[str] = []
    dropped: list[str] = []
    n_echo = n_loop = 0
    for raw in _candidate_lines(reply, class_name, prompt.reply_format):
        if _is_header(raw, class_name):
            dropped.append(raw)
            continue
        text = _clean_line(raw)
        key = norm_text(text)
        if not key or len(text.split()) > defaults.max_words or len(text) > defaults.max_chars:
            dropped.append(raw)
            continue
        if key in examples:
            n_echo += 1
            dropped.append(raw)
            continue
        if any(key == norm_text(k) or SequenceMatcher(None, key, norm_text(k)).ratio() >= defaults.near_duplicate
               for k in kept):
            n_loop += 1
            dropped.append(raw)
            continue
        kept.append(text)

    problem = None
    if len(kept) < defaults.min_descriptions:  # copied or looping lines are dropped; re-ask only if too few remain
        problem = ("prompt echoed" if n_echo >= 2 else "repetition" if n_loop >= 3 else
                   "no bullet lines" if not kept else f"too few descriptions ({len(kept)})")
    return ParsedReply(kept[: defaults.max_descriptions], problem, dropped)


def reask_message(class_name: str, problem: str, prompt: Prompt, defaults: ParseDefaults = ParseDefaults()
                  ) -> str:
    """The follow-up user turn sent after an unusable reply (keeps to the prompt's own reply format)."""
    if prompt.reply_format == "sentences":
        return (f"Please describe {class_name} in more detail, in at least {defaults.min_descriptions} "
                "different sentences.")
    return (f"That answer cannot be used ({problem}). Write the list for \"{class_name}\" again: "
            f"{defaults.min_descriptions} to 10 new lines about {class_name}, each starting with \"- \", "
            "each a different short phrase, with no title and no repeated lines.")
