"""How a notebook hands its artefacts to the next one: ``publish(name=value, ...)`` in the notebook, and a
``${NN_notebook.name}`` reference in the run config.

``publish`` displays the values under a MIME type of their own, so they are saved in the executed notebook
(papermill keeps every output); the runner reads them back from there and substitutes them into later steps'
parameters. In JupyterLab the same call shows a one-line summary. Paths are stored relative to the
repository, so committed executed notebooks name no machine's folders.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .. import paths

MIME = "application/vnd.prolab.outputs+json"
REFERENCE = re.compile(r"^\$\{(?P<step>[0-9]{2}_[A-Za-z0-9_]+)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}$")


def _portable(value: Any) -> Any:
    if isinstance(value, Path):
        root = paths.repo_root()
        p = value.resolve() if value.is_absolute() else value
        return str(p.relative_to(root)) if p.is_absolute() and p.is_relative_to(root) else str(p)
    if isinstance(value, (list, tuple)):
        return [_portable(v) for v in value]
    return value


def publish(**outputs: Any) -> dict[str, Any]:
    """Record this notebook's outputs for the steps after it (see the module docstring)."""
    from IPython.display import display

    values = {k: _portable(v) for k, v in outputs.items()}
    json.dumps(values)  # only JSON values travel between notebooks
    display({MIME: values, "text/plain": "outputs for the next steps: " +
             ", ".join(f"{k} = {v!r}" for k, v in values.items())}, raw=True)
    return values


def read_outputs(executed_notebook: str | Path) -> dict[str, Any]:
    """The values a notebook published, read from its executed copy."""
    nb = json.loads(Path(executed_notebook).read_text(encoding="utf-8"))
    found: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            data = out.get("data") or {}
            if MIME in data:
                found.update(data[MIME])
    return found


def declared_outputs(notebook: str) -> list[str]:
    """The outputs a notebook promises in its metadata (``metadata.prolab.outputs``)."""
    nb = json.loads((paths.notebooks_dir() / notebook).read_text(encoding="utf-8"))
    return list(nb.get("metadata", {}).get("prolab", {}).get("outputs", []))
