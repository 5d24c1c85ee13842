"""One validation layer for every value a user gives: CLI flags, notebook parameters, grid values, config fields.

Each value is checked by name against a ``Rule`` of its stage (``describe``, ``properties``, ``train``,
``evaluate``); the same rules serve ``prolab <stage> --flag``, a run config's notebook parameters and a grid's
axis values, so a bad value is refused before anything runs, with the same words everywhere. Checks that need
the data (K against the number of descriptions) live beside the data and use ``fail``.
"""
from __future__ import annotations

from typing import Any

from . import defaults
from .checks import (SEED, SEED_MAX, Rule, ValidationError, check, check_all, fail,  # noqa: F401  (re-exported)
                     unknown_names)


# --- the rules, by stage ---------------------------------------------------------------------------------------

LOSSES = defaults.PROPERTY_LOSSES
METHODS = defaults.METHODS

RULES: dict[str, dict[str, Rule]] = {
    "describe": {
        "max_attempts": Rule(int, min=1, max=20),
        "concurrency": Rule(int, min=1, max=256),
        "llm_temperature": Rule(float, min=0, max=2),      # the LLM's sampling temperature (not the sigmoid T)
        "max_tokens": Rule(int, min=16, max=4096),          # 6-15 short lines need ~200; caps runaway replies
        "repeat_penalty": Rule(float, min=0, above=True, max=3),
        "seed": SEED,
        "backend": Rule(str, choices=defaults.BACKENDS),
        "prompt": Rule(str),
    },
    "properties": {
        "n_properties": Rule(int, min=1, nullable=True),
        "method": Rule(str, choices=METHODS),
        "embedder_kind": Rule(str, choices=defaults.EMBEDDER_KINDS),
        "seed": SEED,
        "embedder": Rule(str),
        "ks": Rule(list, item=int, min=1, min_length=1),
        "repair": Rule(bool),
        "separate": Rule(bool),
    },
    "evaluate": {
        "split": Rule(str),
        "inference": Rule(str, choices=("whole", "slide")),
        "limit": Rule(int, min=1, nullable=True),
        "n_show": Rule(int, min=0, max=64),
    },
}


def validate(stage: str, values: dict[str, Any], where: str = "", skip_none: bool = False) -> dict[str, Any]:
    """Check every value of ``values`` that ``stage`` has a rule for; unknown names are the caller's business.
    Training settings have their rules on ``TrainConfig``'s fields (``prolab.train.config.RULES``)."""
    return check_all(RULES[stage], values, where, skip_none)
