"""What a result is made of. A result (a trained run, a grid row, an executed notebook) is reused only when
everything that made it is unchanged; these hashes name the code part of that.

A training run depends on the code that computes it (``TRAINING_CODE``): the network (model, backbones,
ViT-Adapter), the losses and their compiled kernels (``fused.cpp``, the Triton file), data loading and
transforms (the embedded generator included: the dataset fingerprint lists files, it does not read pixels), the
training loop and optimiser, the defaults and the offline weights mapping. Not reports, figures, analysis,
bookkeeping (paths, atomic writes, validation) or example data a run does not read: editing those retrains
nothing. Presets (``prolab.presets``) are not code either: a run's identity holds its resolved config, and a
grid cell's hash holds its resolved training config. The other inputs (property space, dataset) are hashed by
content where they are used. Notebooks may call anything, so the pipeline runner hashes all of the package.

Every file under ``segment/``, ``train/``, ``evaluate/`` and ``datasets/`` is classified here, in or out (``CLASSIFIED``, a test checks
it), so a new file cannot silently escape the identity.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

TRAINING_CODE = (
    # the network
    "segment/model.py", "segment/backbones.py", "segment/vit_adapter.py", "segment/weights.py",
    "segment/layers.py",
    # losses and the kernels that compute them (and the fused inference the grid evaluates with)
    "segment/losses.py", "segment/supervision.py", "segment/fused.py", "segment/fused.cpp", "segment/fused_triton.py",
    # the configuration, data, loop, optimiser and checkpoints (a resumed run continues from them)
    "train/config.py", "train/data.py", "train/build.py", "train/optim.py", "train/callbacks.py",
    "train/loop.py", "train/runs.py",
    # data loading and transforms; the embedded default's generator and the registered class lists
    "datasets/__init__.py", "datasets/classes.py", "datasets/resolve.py", "datasets/layouts.py", "datasets/spec.py",
    "datasets/synthetic.py", "datasets/transforms.py", "datasets/classlists",
    "defaults.py", "offline.py",
)
# what a grid row adds: the property space it builds (stage 2), evaluation and the unseen-class protocol
GRID_CODE = TRAINING_CODE + ("embed", "properties", "evaluate/metrics.py", "evaluate/inference.py",
                             "evaluate/unseen.py", "evaluate/score.py", "pipeline/grid.py")
# files of segment/, train/, evaluate/ and datasets/ deliberately left out: package front doors, scoring, tools
# and example data
NOT_TRAINING = ("segment/__init__.py", "train/__init__.py", "evaluate/__init__.py",
                "evaluate/metrics.py", "evaluate/inference.py", "evaluate/unseen.py", "evaluate/score.py",
                "datasets/example.py", "datasets/sample.py", "datasets/variants.py")
CLASSIFIED = TRAINING_CODE + NOT_TRAINING
SUFFIXES = (".py", ".json", ".cpp", ".h", ".cu")
DISPLAY_ONLY = (".palette.json",)   # the classes' colours in figures: nothing a run or a row computes reads them


def _files(parts: tuple[str, ...]) -> list[Path]:
    roots = [_PACKAGE / p for p in parts] or [_PACKAGE]
    files = set()
    for r in roots:
        if not r.exists():
            raise FileNotFoundError(f"identity: {r.relative_to(_PACKAGE)} is listed but does not exist")
        if r.is_file():
            files.add(r)
        else:
            files |= {f for f in r.rglob("*") if f.suffix in SUFFIXES and "__pycache__" not in f.parts
                      and not f.name.endswith(DISPLAY_ONLY)}
    return sorted(files)


def _blank(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> None:
    """Replace the text from (line, col) ``start`` to ``end`` (1-based lines, as ast and tokenize count) by spaces."""
    (l0, c0), (l1, c1) = start, end
    for i in range(l0 - 1, l1):
        a = c0 if i == l0 - 1 else 0
        b = c1 if i == l1 - 1 else len(lines[i])
        lines[i] = lines[i][:a] + " " * (b - a) + lines[i][b:]


def code_text(path: Path) -> str:
    """What of a source file computes: Python without comments and docstrings, C++ without comments, JSON in
    canonical form; trailing spaces and blank lines dropped. Editing prose retrains nothing; editing code does.
    Derived from the source text (not an AST dump), so the same on every Python version."""
    import ast
    import io
    import json
    import re
    import tokenize

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)
    if path.suffix == ".py":
        lines = text.splitlines()
        # character offsets of ast/tokenize are in UTF-8 bytes for ast, characters for tokenize: work on each
        # line's text and only blank whole docstrings (ast) and comments (tokenize, character columns)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                _blank(lines, tok.start, tok.end)
        for node in ast.walk(ast.parse(text)):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                d = body[0]
                for i in range(d.lineno - 1, d.end_lineno):
                    lines[i] = ""      # a docstring statement owns its lines
        text = "\n".join(lines)
    else:   # C++ / CUDA: // and /* */ comments (the kernel sources hold no "//" inside string literals)
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


# CPython 3.11's ast.parse is not thread-safe ("AST constructor recursion depth mismatch" when two threads parse
# at once, e.g. two grid shards in one process); reading a file's code text is cached by (path, mtime, size)
_lock = threading.Lock()
_texts: dict[tuple[str, int, int], str] = {}


def _cached_text(f: Path) -> str:
    st = f.stat()
    key = (str(f), st.st_mtime_ns, st.st_size)
    with _lock:
        if key not in _texts:
            _texts[key] = code_text(f)
        return _texts[key]


def code_hash(*parts: str) -> str:
    """Content hash of the package's code and packaged data (.py, .json and kernel sources, as ``code_text``
    reads them) under the given parts (folders or files relative to ``prolab/``); all of the package when none
    are given."""
    h = hashlib.sha256()
    for f in _files(parts):
        h.update(str(f.relative_to(_PACKAGE)).encode())
        h.update(b"\0")
        h.update(_cached_text(f).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]
