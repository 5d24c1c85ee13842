"""Figures in the course's prose: a number a student reads in a notebook's markdown must be a constant of the
method or of the paper, never a measurement (measurements are printed by computed cells, so they cannot go stale
when the data, the descriptor files or the grids change).

A *figure* is a number in markdown prose, outside inline code, fenced code and LaTeX math (a setting a student
types, ``iters=200``, is code; ``p(1-p) <= 0.25`` is mathematics). Allowed without question: integers up to 10
(counts, list numbering, small exercise values), notebook numbers (``05``; ``11`` where it names a notebook:
"notebook 11", "notebooks 08 to 13", a title "# 11 ·"), years. Every other figure must be a
numeric literal of ``prolab/paper.py`` (the paper's numbers), ``prolab/defaults.py`` or ``prolab/presets.py``
(the kit's constants and presets), a default of a stage's settings (the ``*Defaults`` dataclasses, the LLM's
``GenerationParams``, ``TrainConfig``), a value a committed config sets (``configs/*.yaml``: the grids' axes), or
in ``CONSTANTS`` below, each with its reason.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from .. import paths

# constants of the method, the models or the datasets that no computed cell needs to print (value: why)
CONSTANTS: dict[float, str] = {
    15: "the parser keeps at most 15 descriptions per class (describe.parsing), the release's upper bound",
    18: "the embedded default's number of classes (its definition, datasets/classlists/synthetic_outdoor.json)",
    12: "the coarse label set's number of classes (datasets.variants)",
    60: "notebook 00's title: the method in about 60 lines",
    384: "all-MiniLM-L6-v2's embedding width",
    768: "the width of all-mpnet-base-v2, BGE-base and ViT-B",
    255: "the ignore label of mmseg layouts",
}

_SKIP = re.compile(r"```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$", re.S)
_NUMBER = re.compile(r"(?<![\w.\-/])(\d+(?:\.\d+)?)(?![\w]|\.\d)")


def _literals(f: Path) -> set[float]:
    return {float(n.value) for n in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
            if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)}


def _numbers(value) -> set[float]:
    if isinstance(value, bool):
        return set()
    if isinstance(value, (int, float)):
        return {float(value)}
    if isinstance(value, dict):
        return set().union(*map(_numbers, value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*map(_numbers, value)) if value else set()
    return set()


def _setting_defaults() -> set[float]:
    from dataclasses import fields

    from ..datasets.transforms import AugmentDefaults
    from ..describe.backends import GenerationParams
    from ..describe.parsing import ParseDefaults
    from ..describe.retrieval import RetrievalDefaults
    from ..embed.embedders import EmbedderDefaults
    from ..properties.clustering import ClusteringDefaults
    from ..properties.collisions import NearDefaults
    from ..segment.model import ModelDefaults
    from ..train.config import TrainConfig

    out: set[float] = set()
    for cls in (AugmentDefaults, GenerationParams, ParseDefaults, RetrievalDefaults, EmbedderDefaults,
                ClusteringDefaults, NearDefaults, ModelDefaults, TrainConfig):
        out |= set().union(*(_numbers(f.default) for f in fields(cls)))
    return out


def _config_values() -> set[float]:
    import yaml

    out: set[float] = set()
    for f in sorted((paths.repo_root() / "configs").glob("*.yaml")):
        out |= _numbers(yaml.safe_load(f.read_text(encoding="utf-8")))
    return out


def allowed_values() -> set[float]:
    pkg = Path(__file__).resolve().parents[1]
    return (_literals(pkg / "paper.py") | _literals(pkg / "defaults.py") | _literals(pkg / "presets.py")
            | _setting_defaults() | _config_values() | set(map(float, CONSTANTS)))


def _names_a_notebook(prose: str, m: re.Match) -> bool:
    before, after = prose[max(0, m.start() - 24):m.start()], prose[m.end():m.end() + 3]
    return bool(re.search(r"otebooks?\s+(\d\d\s*(to|and|-)\s*)?$", before) or re.match(r"\s*·", after))


def figures(text: str, allowed: set[float] | None = None) -> list[str]:
    """The figures of a markdown text that are neither trivially allowed nor constants (see the module doc)."""
    allowed = allowed_values() if allowed is None else allowed
    prose = _SKIP.sub(" ", text)
    out = []
    for m in _NUMBER.finditer(prose):
        token, v = m.group(1), float(m.group(1))
        if re.fullmatch(r"0\d", token) or (v.is_integer() and (v <= 10 or 1900 <= v <= 2099)) or v in allowed:
            continue
        if re.fullmatch(r"\d\d", token) and _names_a_notebook(prose, m):
            continue
        out.append(f"{token} in '...{' '.join(prose[max(0, m.start() - 50):m.end() + 30].split())}...'")
    return out


def notebook_figures(notebook: Path) -> list[str]:
    """Every figure in a notebook's markdown cells, with the cell's index."""
    allowed = allowed_values()
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    return [f"cell {i}: {f}" for i, c in enumerate(cells) if c["cell_type"] == "markdown"
            for f in figures("".join(c["source"]), allowed)]


if __name__ == "__main__":
    for nb in sorted((paths.repo_root() / "notebooks").glob("*.ipynb")):
        for line in notebook_figures(nb):
            print(f"{nb.name}: {line}")
