"""The package's layering, read from its source (every import, at module level or inside a function): the
stages (datasets, describe, properties, segment) never import the layers built on them (analysis, reports,
interop, pipeline, cli), so a stage can be read, tested and reused without the command line or the reports."""
import ast
from pathlib import Path

import prolab

PKG = Path(prolab.__file__).resolve().parent
STAGES = ("datasets", "describe", "properties", "segment")
ABOVE = ("analysis", "reports", "interop", "pipeline", "cli")


def _imports(f: Path, pkg: Path):
    rel = f.relative_to(pkg.parent).with_suffix("")
    parts = list(rel.parts)[:-1] if f.name == "__init__.py" else list(rel.parts)
    base = parts if f.name == "__init__.py" else parts[:-1]
    for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            root = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(root + ([node.module] if node.module else []))
            yield node.lineno, [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            yield node.lineno, [a.name for a in node.names]


def upward_imports(pkg: Path = PKG) -> list[str]:
    found = []
    for f in sorted(pkg.rglob("*.py")):
        stage = f.relative_to(pkg).parts[0]
        if stage not in STAGES:
            continue
        for line, names in _imports(f, pkg):
            hit = next((n for n in names if n.split(".")[:1] == ["prolab"] and len(n.split(".")) > 1
                        and n.split(".")[1] in ABOVE), None)
            if hit:
                found.append(f"{f.relative_to(pkg)}:{line} imports {hit}")
    return found


def test_stages_never_import_the_layers_above_them():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    pkg = tmp_path / "prolab"
    (pkg / "describe").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "describe" / "__init__.py").write_text("")
    (pkg / "describe" / "x.py").write_text("def f():\n    from ..reports.tables import write_tables\n")
    assert upward_imports(pkg) == ["describe/x.py:2 imports prolab.reports.tables"]
