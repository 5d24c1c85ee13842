"""The package's layering, as pyproject.toml's import-linter contracts state it: the stages in pipeline order,
each importing only the layers below it, and no import cycle among the siblings of any package (grimp reads
every import, function-level ones included). Plus what import-linter does not check: no private name
(``_name``) imported from another module."""
import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import prolab

PKG = Path(prolab.__file__).resolve().parent
ROOT = PKG.parent
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_linter_contracts_are_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 kept, 0 broken" in r.stdout


def test_the_contracts_catch_an_upward_import_inside_a_function_and_a_cycle(tmp_path):
    """The same contracts on a tiny package shaped like the kit: a stage importing a report inside a function
    breaks the layers; two sibling modules importing each other break the acyclic contract."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    pkg = tmp_path / "prolab"
    layers = [m.strip() for layer in cfg["contracts"][0]["layers"] for m in layer.split("|")]
    for mod in layers:
        name = mod.split(".", 1)[1]
        (pkg / name).mkdir(parents=True, exist_ok=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "describe" / "x.py").write_text("def f():\n    from ..reports import tables\n")
    (pkg / "reports" / "tables.py").write_text("")
    (pkg / "segment" / "a.py").write_text("from . import b\n")
    (pkg / "segment" / "b.py").write_text("def g():\n    from . import a\n")
    lines = ['[tool.importlinter]', 'root_package = "prolab"']
    for c in cfg["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {list(v)!r}" for k, v in c.items()]
    (tmp_path / "pyproject.toml").write_text("\n".join(lines).replace("'", '"') + "\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "prolab.describe.x -> prolab.reports.tables" in r.stdout
    assert "0 kept, 2 broken" in r.stdout and "prolab.segment" in r.stdout


def _module(f: Path, pkg: Path) -> list[str]:
    rel = f.relative_to(pkg.parent).with_suffix("")
    return list(rel.parts)[:-1] if f.name == "__init__.py" else list(rel.parts)


def private_imports(pkg: Path = PKG) -> list[str]:
    """``from <another module> import _name`` anywhere in the package (function level included)."""
    found = []
    for f in sorted(pkg.rglob("*.py")):
        mod = _module(f, pkg)
        base = mod if f.name == "__init__.py" else mod[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            root = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(root + ([node.module] if node.module else []))
            if not target.startswith("prolab") or target == ".".join(mod):
                continue
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{f.relative_to(pkg)}:{node.lineno} imports {target}.{a.name}")
    return found


def test_no_private_name_crosses_a_module():
    assert private_imports() == []


def test_the_private_check_sees_one(tmp_path):
    pkg = tmp_path / "prolab"
    (pkg / "segment").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "segment" / "__init__.py").write_text("")
    (pkg / "segment" / "fused.py").write_text("def f():\n    from .losses import _labelled\n")
    assert private_imports(pkg) == ["segment/fused.py:2 imports prolab.segment.losses._labelled"]


MAX_LINES = 500


def test_no_module_is_longer_than_a_reader_can_hold():
    """At most MAX_LINES lines a module; a self-contained model file may be longer when its docstring says so."""
    long = []
    for f in sorted(PKG.rglob("*.py")):
        text = f.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > MAX_LINES and "self-contained model file" not in doc:
            long.append(f"{f.relative_to(PKG)}: {text.count(chr(10))} lines")
    assert long == []


def unresolved_imports(pkg: Path = PKG) -> list[str]:
    """Every ``from prolab... import name`` of the package (function-level ones included, which run only when
    their function does) that names a module or attribute that does not exist. Optional extras (mmseg, triton)
    are skipped when they are not installed."""
    import importlib
    import importlib.util

    bad = []
    for f in sorted(pkg.rglob("*.py")):
        base = _module(f, pkg)[:-1] if f.name != "__init__.py" else _module(f, pkg)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            root = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(root + ([node.module] if node.module else [])) if node.level else node.module
            if not target or not target.startswith("prolab"):
                continue
            try:
                module = importlib.import_module(target)
            except ModuleNotFoundError as e:
                if e.name and e.name.split(".")[0] in ("mmseg", "mmengine", "mmcv", "triton"):
                    continue
                bad.append(f"{f.relative_to(pkg)}:{node.lineno} imports {target} ({e})")
                continue
            for a in node.names:
                if a.name != "*" and not hasattr(module, a.name) and \
                        importlib.util.find_spec(f"{target}.{a.name}") is None:
                    bad.append(f"{f.relative_to(pkg)}:{node.lineno} imports {target}.{a.name}")
    return bad


def test_every_import_in_the_package_resolves():
    """A function-level import runs only when its function does: one left pointing at a moved module would fail
    at a user's first call, not at import time."""
    assert unresolved_imports() == []
