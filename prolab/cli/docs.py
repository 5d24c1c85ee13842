"""The generated pages of the documentation site, written before ``mkdocs build`` (``make docs``).

- ``reference/cli.md``: every ``prolab`` subcommand's ``--help``, from the parser itself (``cli.build_parser``);
- ``reference/configuration.md``: every training setting (``TrainConfig``): type, default, the demo and paper
  presets' values, its help and validation rule;
- ``course/notebooks/*.ipynb``: the executed notebooks of ``results/demo/`` (rendered as they ran, never re-run);
- ``results/index.md``: ``results/README.md``, the results and the paper's claims measured on the grids;
- ``index.md``: the README, the site's front page.

They are build outputs (git-ignored), so the site cannot disagree with the code or the committed results.

    python -m prolab.cli.docs [--docs docs]
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import MISSING, fields
from pathlib import Path

from .. import paths
from ..files import atomic_write_text

from ..reports.summary import GENERATED, source_pages  # noqa: F401  (the site's own pages)


def cli_reference() -> str:
    from . import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = ["# Command line", "", "Generated from the parser by `prolab.cli.docs`: what `prolab <command> --help` "
           "prints. Flag names equal the notebooks' parameter names.", ""]
    for name, p in sub.choices.items():
        p.prog = f"prolab {name}"
        out += [f"## prolab {name}", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _cell(v, code: bool = False) -> str:
    """A value in a table cell: values as code (strings quoted, so '' and None read apart), text as text."""
    if not code and (v is None or v == ""):
        return ""
    text = (repr(v) if isinstance(v, str) else str(v)) if code else str(v)
    text = text.replace("|", "\\|")
    return f"`{text}`" if code else text.replace("<", "&lt;")


def configuration_reference() -> str:
    from ..presets import preset_values
    from ..train.config import HELP, TrainConfig
    from ..validation import RULES

    demo, paper = preset_values("demo"), preset_values("paper", "ade20k_150")
    rows = ["| setting | type | default | demo | paper (ADE20K) | what it is | accepted values |",
            "|---|---|---|---|---|---|---|"]
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else f.default_factory()   # type: ignore[misc]
        rule = RULES["train"].get(f.name)
        preset = [_cell(p[f.name], code=True) if f.name in p else "" for p in (demo, paper)]
        rows.append(f"| `{f.name}` | {_cell(str(f.type))} | {_cell(default, code=True)} | {preset[0]} | {preset[1]} | "
                    f"{_cell(HELP.get(f.name, ''))} | {_cell(rule.describe() if rule else '')} |")
    return "\n".join(["# Training configuration", "",
                      "Generated from `prolab.train.config.TrainConfig`, its `HELP`, the presets "
                      "(`prolab.presets`) and the validation rules (`prolab.validation.RULES['train']`) by "
                      "`prolab.cli.docs`. The same names are `prolab train` flags, notebook 05 parameters "
                      "and the keys of a grid's `train:` section (except what each cell sets itself). An empty "
                      "preset cell means the preset keeps the default.", "", *rows, ""])


def write(docs: Path) -> list[Path]:
    """Write the generated pages under ``docs``; returns them."""
    written = []
    for rel, text in (("reference/cli.md", cli_reference()),
                      ("reference/configuration.md", configuration_reference())):
        atomic_write_text(docs / rel, text)
        written.append(docs / rel)
    src = paths.results_root() / "demo" / "notebooks"
    dst = docs / "course" / "notebooks"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for nb in sorted(src.glob("*.ipynb")):
        shutil.copy2(nb, dst / nb.name)
        written.append(dst / nb.name)
    for src_md, rel in ((paths.results_root() / "README.md", "results/index.md"),
                        (paths.repo_root() / "README.md", "index.md")):
        atomic_write_text(docs / rel, src_md.read_text(encoding="utf-8"))
        written.append(docs / rel)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description="write the documentation site's generated pages")
    ap.add_argument("--docs", default=str(paths.repo_root() / "docs"), help="the site's docs folder (default: docs/)")
    a = ap.parse_args()
    for f in write(Path(a.docs)):
        print(f"wrote {f}")


if __name__ == "__main__":
    main()
