"""What a result is made of. A result (a trained run, an executed notebook, a grid row) is reused only when
everything that made it is unchanged; these hashes name the parts that are not a config value."""
from __future__ import annotations

import hashlib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def code_hash() -> str:
    """Content hash of the package's code and packaged data (every .py and .json under prolab/): any edit to
    the kit changes it, so no result made by older code is taken for a current one."""
    h = hashlib.sha256()
    for f in sorted(list(_PACKAGE.rglob("*.py")) + list(_PACKAGE.rglob("*.json"))):
        if "__pycache__" in f.parts:
            continue
        h.update(str(f.relative_to(_PACKAGE)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
