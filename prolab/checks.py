"""How a user-given value is checked: a ``Rule`` (type, range, choices, pattern, a further test) and ``check``,
which raises a ``ValidationError`` naming the value, with a "did you mean" hint for near misses. A leaf: the
rules of each stage live in ``prolab.validation``; the dataset YAML reader uses these directly.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable


class ValidationError(ValueError):
    """A user-given value is out of range, of the wrong type, or unknown. The message names it."""


@dataclass(frozen=True)
class Rule:
    kind: type                        # int, float, str, bool, list (a list of ``item`` values)
    min: float | None = None          # smallest allowed value (inclusive unless ``above``)
    max: float | None = None
    above: bool = False               # min is exclusive: the value must be > min
    choices: tuple | None = None
    nullable: bool = False            # None is allowed (means "the default")
    length: int | None = None         # lists: exact length
    item: type | None = None          # lists: type of each element (checked against min/max too)
    pattern: str | None = None        # strings: a regular expression the whole value must match
    pattern_help: str = ""
    min_length: int | None = None     # lists: at least this many items
    # a further check of a value that passed the others (a dataset name, an existing file): None if the value is
    # fine, else what it must be (the message's "must be ..." part)
    accept: Callable[[Any], str | None] | None = None

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices)) + (" (or None)" if self.nullable else "")
        what = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(self.kind, "")
        if self.kind is list:
            items = {int: "integers", float: "numbers", str: "strings"}.get(self.item, "values")
            what = f"{self.length or ''} {items}"
            what = ("a non-empty list of " if self.min_length == 1 else "a list of ") + what.strip()
            if self.min_length and self.min_length > 1:
                what += f" (at least {self.min_length})"
        lo = "" if self.min is None else f"{'>' if self.above else '>='} {_num(self.min)}"
        hi = "" if self.max is None else f"<= {_num(self.max)}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return f"{what} {bounds}".strip() + (" (or None)" if self.nullable else "")


def _num(v: float) -> str:
    """A bound as written: integers in full (4294967295, not 4.29497e+09), other numbers short."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e18 else f"{v:g}"


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)


def _in_range(v: float, r: Rule) -> bool:
    if r.min is not None and (v <= r.min if r.above else v < r.min):
        return False
    return r.max is None or v <= r.max


def fail(name: str, value: Any, must: str, where: str = "") -> None:
    raise ValidationError(f"{where + ': ' if where else ''}{name} = {value!r}: must be {must}")


def check(name: str, value: Any, rule: Rule, where: str = "") -> Any:
    """Return ``value`` if it satisfies ``rule``, else raise ``ValidationError`` naming it."""
    if value is None:
        if rule.nullable:
            return value
        fail(name, value, rule.describe(), where)
    if not _is(value, rule.kind):
        fail(name, value, rule.describe(), where)
    items = value if rule.kind is list else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in items):
        fail(name, value, "a finite number", where)
    if rule.choices is not None and value not in rule.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in rule.choices], n=1)
        fail(name, value, rule.describe() + (f" (did you mean {close[0]!r}?)" if close else ""), where)
    if rule.kind is list:
        if rule.length is not None and len(value) != rule.length:
            fail(name, value, rule.describe(), where)
        if rule.min_length is not None and len(value) < rule.min_length:
            fail(name, value, rule.describe(), where)
        for v in value:
            if rule.item is not None and not _is(v, rule.item):
                fail(name, value, rule.describe(), where)
            if rule.item in (int, float) and not _in_range(v, rule):
                fail(name, value, rule.describe(), where)
            if rule.item is str and not v.strip():
                fail(name, value, rule.describe() + " (no empty string)", where)
    elif rule.kind in (int, float) and not _in_range(value, rule):
        fail(name, value, rule.describe(), where)
    if rule.kind is str and not value.strip():
        fail(name, value, "a non-empty string", where)
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        fail(name, value, rule.pattern_help or f"a string matching {rule.pattern}", where)
    if rule.accept is not None:
        problem = rule.accept(value)
        if problem:
            fail(name, value, problem, where)
    return value


def unknown_names(given: Iterable[str], known: Iterable[str], what: str, where: str) -> None:
    """Error for names that are not among ``known``, with the closest known names."""
    known = list(known)
    bad = [g for g in given if g not in known]
    if not bad:
        return
    hints = []
    for b in bad:
        close = difflib.get_close_matches(b, known, n=3, cutoff=0.6)
        hints.append(f"{b!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    raise ValidationError(f"{where}: unknown {what} {', '.join(hints)}; known: {', '.join(known)}")


def check_all(rules: dict[str, Rule], values: dict[str, Any], where: str = "", skip_none: bool = False) -> dict:
    """Check every value that ``rules`` has a rule for; unknown names are the caller's business."""
    for name, value in values.items():
        if name in rules and not (skip_none and value is None):
            check(name, value, rules[name], where)
    return values


# --- rules several stages share ----------------------------------------------------------------------------------

def _path_like(value: Any) -> str | None:
    return None if isinstance(value, (str, os.PathLike)) and str(value).strip() else "a path (a non-empty string)"


PATHLIKE = Rule(object, nullable=True, accept=_path_like)            # a file or folder, or None (the default)
PATHLIKE_REQUIRED = Rule(object, accept=_path_like)
SUFFIX = Rule(str, pattern=r"[^/\\]*\.[A-Za-z0-9]+", pattern_help="a file ending with an extension, e.g. '.jpg' or "
              "'_label.png'")
# numpy's and torch's generators take seeds below 2**32 (larger ones fail deep inside them, "Overflow when
# unpacking long long", naming no flag)
SEED_MAX = 2**32 - 1
SEED = Rule(int, min=0, max=SEED_MAX)
