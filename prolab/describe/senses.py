"""Prompt names: the name a class is put to the LLM under, where the bare mmseg name is ambiguous or unreadable.

mmseg spells classes tersely: ADE20K's ``tank`` is a storage tank and its ``blind`` a window blind, but a small
model asked about the bare word describes an armoured vehicle and a person who cannot see. COCO-Stuff's
``wall-brick`` and Pascal Context's ``tvmonitor`` are file-name spellings, not words. ``prompt_names/<dataset>.json``
maps such mmseg names to the name to put in the prompt (``{"tank": "storage tank"}``); every other class is asked
under its own name. Descriptor files stay keyed by the mmseg name: only the question changes.

Sources of the mappings (details and the reason for every entry: ``prompt_names/README.md``): ADE20K's own full
class names (objectInfo150 of the MIT Scene Parsing benchmark), COCO-Stuff's label descriptions, and readable
forms of file-name spellings. Using them is opt-in: ``describe_dataset(..., prompt_names=True)``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PROMPT_NAMES_DIR = Path(__file__).resolve().with_name("prompt_names")


def _key(dataset: str | Path) -> str:
    from ..datasets import dataset_key

    return dataset_key(dataset)


@lru_cache(maxsize=None)
def _load(path: str) -> tuple[tuple[str, str], ...]:
    p = Path(path)
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
                                             for k, v in data.items()):
        raise ValueError(f"{p}: a prompt-name file is a JSON object {{mmseg class name: prompt name}} of "
                         "non-empty strings")
    return tuple((k, v) for k, v in data.items())


def prompt_name_datasets() -> list[str]:
    """Datasets with a prompt-name file."""
    return sorted(p.stem for p in PROMPT_NAMES_DIR.glob("*.json"))


def prompt_names(dataset: str | Path) -> dict[str, str]:
    """``{mmseg class name: prompt name}`` for the classes of ``dataset`` that have one (in class order; keys are
    normalised class names, as in descriptor files); ``{}`` for a dataset without a prompt-name file. For a
    dataset YAML, its ``prompt_names`` key."""
    from ..datasets import is_spec_path, normalize_class_name

    if is_spec_path(dataset):
        from ..datasets.spec import load_spec

        return dict(load_spec(dataset).prompt_names)

    path = PROMPT_NAMES_DIR / f"{_key(dataset)}.json"
    if not path.exists():
        return {}
    return {normalize_class_name(k): " ".join(v.split()) for k, v in _load(str(path))}


def prompt_name(dataset: str | Path, class_name: str) -> str:
    """The name ``class_name`` of ``dataset`` is put to the LLM under: its prompt name, else itself (normalised)."""
    from ..datasets import normalize_class_name

    name = normalize_class_name(class_name)
    return prompt_names(dataset).get(name, name)


def resolve_prompt_names(dataset: str | Path, class_names: list[str],
                         mapping: bool | dict[str, str] | None) -> dict[str, str]:
    """The prompt names a run uses, ``{class: prompt name}`` in class order: ``False``/``None`` -> none,
    ``True`` -> the dataset's file (for the classes of ``class_names`` it lists), a dict -> that mapping (e.g.
    one recorded in a sidecar), where a key that is not a class of the list is an error (a silent no-op would
    hide a typo). Entries whose name equals the class's are left out."""
    if mapping is None or mapping is False:
        return {}
    from ..datasets import normalize_class_name

    known = set(class_names)
    if mapping is True:
        table = {k: v for k, v in prompt_names(dataset).items() if k in known}
    elif isinstance(mapping, dict):
        table = {normalize_class_name(k): " ".join(str(v).split()) for k, v in mapping.items()}
    else:
        raise TypeError(f"prompt_names must be True, False or a dict {{class: prompt name}}, got {mapping!r}")
    unknown = [k for k in table if k not in known]
    if unknown:
        raise ValueError(f"prompt names for classes that {_key(dataset)!r} does not have: "
                         f"{', '.join(map(repr, unknown[:10]))}")
    empty = [k for k, v in table.items() if not v]
    if empty:
        raise ValueError(f"empty prompt names for {', '.join(map(repr, empty))}")
    return {c: table[c] for c in class_names if c in table and table[c] != c}
