"""What a result is made of. A result (a trained run, a grid row, an executed notebook) is reused only when
everything that made it is unchanged; these hashes name the code part of that.

A training run depends on the code that computes it (``TRAINING_CODE``: data loading, model, losses, the
loop, defaults, the offline weights mapping), not on figures or the CLI; its other inputs (the property
space, the dataset) are hashed by content where they are used. Notebooks may call anything, so the pipeline
runner hashes all of the package."""
from __future__ import annotations

import hashlib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

TRAINING_CODE = ("segment", "datasets", "defaults.py", "offline.py", "files.py")
GRID_CODE = TRAINING_CODE + ("properties", "pipeline/grid.py")


def code_hash(*parts: str) -> str:
    """Content hash of the package's code and packaged data (.py and .json files) under the given parts
    (folders or files relative to ``prolab/``); all of the package when none are given."""
    roots = [_PACKAGE / p for p in parts] or [_PACKAGE]
    files = set()
    for r in roots:
        if r.is_file():
            files.add(r)
        else:
            files |= {f for f in list(r.rglob("*.py")) + list(r.rglob("*.json")) if "__pycache__" not in f.parts}
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(_PACKAGE)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
