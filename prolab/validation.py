"""One validation layer for every value a user gives: CLI flags, notebook parameters, grid values, config fields.

Each value is checked by name against a ``Rule`` of its stage (``describe``, ``properties``, ``train``,
``evaluate``); the same rules serve ``prolab <stage> --flag``, a run config's notebook parameters and a grid's
axis values, so a bad value is refused before anything runs, with the same words everywhere. Checks that need
the data (K against the number of descriptions) live beside the data and use ``fail``.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from . import defaults


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

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        what = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(self.kind, "")
        if self.kind is list:
            what = f"{self.length or ''} {'integers' if self.item is int else 'numbers' if self.item else 'values'}"
            what = "a list of " + what.strip()
        lo = "" if self.min is None else f"{'>' if self.above else '>='} {self.min:g}"
        hi = "" if self.max is None else f"<= {self.max:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return f"{what} {bounds}".strip() + (" (or None)" if self.nullable else "")


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
        for v in value:
            if rule.item is not None and (not _is(v, rule.item) or not _in_range(v, rule)):
                fail(name, value, rule.describe(), where)
    elif rule.kind in (int, float) and not _in_range(value, rule):
        fail(name, value, rule.describe(), where)
    if rule.kind is str and not value.strip():
        fail(name, value, "a non-empty string", where)
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        fail(name, value, rule.pattern_help or f"a string matching {rule.pattern}", where)
    return value


# --- the rules, by stage ---------------------------------------------------------------------------------------

_SEED = Rule(int, min=0)
LOSSES = defaults.PROPERTY_LOSSES
METHODS = defaults.METHODS

RULES: dict[str, dict[str, Rule]] = {
    "describe": {
        "max_attempts": Rule(int, min=1, max=20),
        "concurrency": Rule(int, min=1, max=256),
        "llm_temperature": Rule(float, min=0, max=2),      # the LLM's sampling temperature (not the sigmoid T)
        "max_tokens": Rule(int, min=16, max=4096),          # 6-15 short lines need ~200; caps runaway replies
        "repeat_penalty": Rule(float, min=0, above=True, max=3),
        "seed": _SEED,
        "backend": Rule(str, choices=defaults.BACKENDS),
        "prompt": Rule(str),
    },
    "properties": {
        "n_properties": Rule(int, min=1, nullable=True),
        "method": Rule(str, choices=METHODS),
        "embedder_kind": Rule(str, choices=defaults.EMBEDDER_KINDS),
        "seed": _SEED,
        "embedder": Rule(str),
        "ks": Rule(list, item=int, min=1),
        "repair": Rule(bool),
        "separate": Rule(bool),
    },
    "train": {
        "run_name": Rule(str),
        "mode": Rule(str, choices=defaults.MODES),
        "loss": Rule(str, choices=LOSSES),
        "temperature": Rule(float, min=0, above=True, max=10),  # T of sigmoid(z / T)
        "iters": Rule(int, min=1),
        "batch_size": Rule(int, min=1),
        "crop_size": Rule(int, min=8),
        "scale": Rule(list, length=2, item=int, min=8),
        "channels": Rule(int, min=1),
        "aux_weight": Rule(float, min=0, nullable=True),
        "head_init": Rule(str, choices=defaults.HEAD_INITS),
        "normalize_bank": Rule(bool),
        "normalize": Rule(bool),
        "lr": Rule(float, min=0, above=True, max=10),
        "weight_decay": Rule(float, min=0),
        "layer_decay": Rule(float, min=0, above=True, max=1),
        "warmup_iters": Rule(int, min=0),
        "poly_power": Rule(float, min=0),
        "onehot_warmup_iters": Rule(int, min=0),
        "name_embedder": Rule(str),
        "ignore_index": Rule(int, min=0, max=255),
        "seed": _SEED,
        "num_workers": Rule(int, min=0, max=64),
        "checkpoint_interval": Rule(int, min=1),
        "log_interval": Rule(int, min=1),
        "device": Rule(str, pattern=r"auto|cpu|mps|cuda(:\d+)?", pattern_help="auto, cpu, mps, cuda or cuda:N"),
        "preset": Rule(str, choices=tuple(defaults.PRESETS)),
    },
    "evaluate": {
        "split": Rule(str),
        "inference": Rule(str, choices=("whole", "slide")),
        "limit": Rule(int, min=1, nullable=True),
        "n_show": Rule(int, min=0, max=64),
    },
}


def validate(stage: str, values: dict[str, Any], where: str = "", skip_none: bool = False) -> dict[str, Any]:
    """Check every value of ``values`` that ``stage`` has a rule for; unknown names are the caller's business."""
    rules = RULES[stage]
    for name, value in values.items():
        if name in rules and not (skip_none and value is None):
            check(name, value, rules[name], where)
    return values


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
