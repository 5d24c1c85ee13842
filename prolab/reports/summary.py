"""The figures the READMEs quote, written from the result files that produced them.

README.md, results/README.md and the documentation site's pages (``docs/``) hold blocks between
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``; ``fill`` rewrites each block from ``results/`` (the
demo's ``timings.json``, the grid's ``runs.csv``, the bench outputs), so no quoted number is typed by hand.
``python -m prolab.reports.summary`` (``make figures``) updates them all; a test checks that they are up to
date.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .. import paths
from ..files import atomic_write_text, read_json
from ..fmt import mean_std

BLOCK = re.compile(r"(<!-- figures:(?P<name>[a-z_-]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def _demo_times() -> str:
    t = read_json(paths.results_dir("demo") / "timings.json")
    total = sum(t.values())
    parts = " + ".join(f"{v:g}" for v in t.values())
    return (f"`make demo` took **{total:.0f} s** of pipeline time for its {len(t)} notebooks ({parts} s in "
            f"notebook order, kernel start-up included; `results/demo/timings.json`), after the environment "
            "exists.\n")


def _grid_times() -> str:
    runs = pd.read_csv(paths.results_dir("demo_grid") / "runs.csv")
    g = read_json(paths.results_dir("demo_grid") / "grid.json")
    s = runs["train_seconds"]
    return (f"The committed grid: {len(runs)} runs of {g['train'].get('iters', '?')} iterations, "
            f"{s.sum() / 60:.1f} minutes of training in all ({s.mean():.0f} s per run on average, "
            f"{s.min():.0f}-{s.max():.0f} s; `results/demo_grid/runs.csv`, column `train_seconds`).\n")


def _grid_results(grid: str = "demo_grid") -> str:
    runs = pd.read_csv(paths.results_dir(grid) / "runs.csv")
    extra = [c for c in runs.columns if c.startswith("mIoU_")]     # further splits the grid scored
    lines = ["| axis | setting | mIoU (mean ± std over seeds) | " + "".join(f"{c.replace('_', ' ')} | " for c in extra)
             + "runs |", "|---|---|---:|" + "---:|" * len(extra) + "---:|"]
    base = runs[runs["axis"] == "base"]
    axes = ["base"] + [a for a in runs["axis"].unique() if a != "base"]
    for axis in axes:
        rows = base if axis == "base" else runs[runs["axis"] == axis]
        col = "n_properties" if axis == "base" else axis
        for value, grp in rows.groupby(rows[col].map(lambda v: "the dataset's default" if pd.isna(v) else str(v)), sort=False):
            label = f"K = {value} (base)" if axis == "base" else value
            lines.append(f"| {axis} | {label} | {mean_std(grp['mIoU'])} | " + "".join(f"{mean_std(grp[c])} | " for c in extra)
                         + f"{len(grp)} |")
    return "\n".join(lines) + f"\n\n(`results/{grid}/runs.csv`; the paper-shaped tables are in `tables.md`.)\n"


def _class_iou(grid: str, classes: list[str], settings: list[str] | None = None) -> str:
    """Per-class IoU (mean ± std over seeds) of chosen classes, per setting of a grid (``per_class.csv``)."""
    f = paths.results_dir(grid) / "per_class.csv"
    pc = pd.read_csv(f)
    if settings:
        pc = pc[pc["setting"].isin(settings)]
    lines = ["| setting | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    keys = pc["setting"] + (" (" + pc["split"] + ")" if "split" in pc else "")   # one row per setting and split
    for setting, grp in pc.groupby(keys, sort=False):
        lines.append(f"| {setting} | " + " | ".join(mean_std(grp[c]) for c in classes) + " |")
    return "\n".join(lines) + f"\n\n(IoU per class, `results/{grid}/per_class.csv`.)\n"


def _signature_stats() -> str:
    """Near-collision statistics of the committed property spaces (``properties/*/*.safetensors``)."""
    from ..properties import PropertySpace, report_lines, signature_report

    lines = ["| space | classes | K | identical | near pairs | over-shared properties | closest pair |",
             "|---|---:|---:|---:|---:|---:|---|"]
    from ..datasets import DATASETS

    # the kit's default spaces only (a user's own spaces or -repaired/-separated variants may sit beside them)
    for f in sorted((paths.repo_root() / "properties").glob("*/*.safetensors")):
        if f.parent.name not in DATASETS or not f.stem.endswith(f"kmeans-s0-k{DATASETS[f.parent.name].n_properties}"):
            continue
        space = PropertySpace.load(f)
        r = signature_report(space)
        near = [line.split(": ", 1)[1] for line in report_lines(r) if line.startswith("near: ")]
        lines.append(f"| {f.parent.name} | {space.n_classes} | {space.n_properties} | {len(r['collisions'])} | "
                     f"{len(r['near'])} | {len(r['overshared'])} | {near[0] if near else '-'} |")
    return "\n".join(lines) + "\n\n(`python -m prolab.reports.summary` computes it from the committed spaces.)\n"


def _protocol(grid: str, kind: str) -> str:
    """The unseen-protocol table, the budget table and gaps, or the settings table of a grid
    (``reports.protocols``)."""
    from .protocols import budget_gaps, budget_table, settings_table, unseen_table

    runs = pd.read_csv(paths.results_dir(grid) / "runs.csv")
    meta = read_json(paths.results_dir(grid) / "grid.json")
    if kind == "unseen":
        body = unseen_table(runs).to_markdown(index=False)
    elif kind == "settings":
        body = settings_table(runs).to_markdown(index=False, disable_numparse=True)
    else:
        body = (budget_table(runs, meta).to_markdown(index=False) + "\n\n"
                + budget_gaps(runs).to_markdown(index=False, floatfmt=".2f"))
    return body + f"\n\n(`results/{grid}/runs.csv`; mean ± std over seeds.)\n"


def _budget_verdict() -> str:
    from .protocols import budget_verdict

    runs = pd.read_csv(paths.results_dir("budget_grid") / "runs.csv")
    settings = paths.results_dir("settings_grid") / "runs.csv"
    return budget_verdict(runs, pd.read_csv(settings) if settings.exists() else None) + \
        "\n\n(`prolab.reports.protocols.budget_verdict` on `results/budget_grid/runs.csv` and " \
        "`results/settings_grid/runs.csv`.)\n"


def _label_sets() -> str:
    from ..analysis.label_sets import label_set_table

    runs = pd.read_csv(paths.results_dir("label_sets") / "runs.csv")
    return label_set_table(runs).to_markdown(index=False) + "\n\n(`results/label_sets/runs.csv`; coarse mIoU over " \
        "the 10 coarse classes labelled in training, fine mIoU over the 16.)\n"


def _restamps() -> str:
    """Every re-stamp of the committed grids (``prolab verify GRID --restamp``), from their ``restamps.json``."""
    lines = ["| grid | code from -> to | date | cells re-run | values compared, all identical | rows re-stamped |",
             "|---|---|---|---:|---:|---:|"]
    for f in sorted(paths.results_root().glob("*/restamps.json")):
        for r in read_json(f):
            cells = ", ".join(f"{c['axis']} seed {c['seed']}" for c in r["cells"])
            lines.append(f"| {f.parent.name} | {r['from']} -> {r['to']} | {r['date'][:10]} | {cells} | "
                         f"{r['values_compared']} | {r['rows_restamped']} |")
    return "\n".join(lines) + "\n\n(each grid's `restamps.json`: cells, tolerance 0, environment.)\n"


def _bench(name: str) -> str:
    f = paths.results_dir("bench") / name
    return "```\n" + f.read_text(encoding="utf-8").strip() + "\n```\n"


def _claims() -> str:
    from .claims import markdown

    return markdown()


def _lr_init() -> str:
    from .claims import lr_init_summary, lr_init_table

    return (lr_init_table().to_markdown(index=False) + "\n\n" + lr_init_summary() +
            " (`prolab.reports.claims` on `results/lr_init_grid/runs.csv`)\n")


RENDER = {
    "claims": _claims,
    "lr-init": _lr_init,
    "demo-times": _demo_times,
    "grid-times": _grid_times,
    "grid-results": _grid_results,
    "street-grid-results": lambda: _grid_results("custom_grid_street"),
    "street-class-iou": lambda: _class_iou("custom_grid_street", ["Road", "Sidewalk", "Fence", "Building", "Pole"]),
    "signature-stats": _signature_stats,
    "demo-class-iou": lambda: _class_iou("demo_grid", ["pole", "fence", "road", "sidewalk", "cloud", "sand"],
                                         settings=["base", "separate=True", "mode=category"]),
    "unseen-grid-results": lambda: _protocol("unseen_grid", "unseen"),
    "budget-grid-results": lambda: _protocol("budget_grid", "budget"),
    "settings-grid-results": lambda: _protocol("settings_grid", "settings"),
    "budget-verdict": _budget_verdict,
    "label-sets-results": lambda: _label_sets(),
    "bench-retrieval": lambda: _bench("retrieval.txt"),
    "bench-properties": lambda: _bench("properties.txt"),
    "bench-heads": lambda: _bench("heads_cpu.txt"),
    "bench-kernel-build": lambda: _bench("kernel_build.txt"),
    "bench-threads": lambda: _bench("threads.txt"),
    "bench-setup": lambda: _bench("setup.txt"),
    "restamps": _restamps,
    "demo-reproduced": lambda: _bench("demo_reproduced.txt"),
    "bench-heads-before": lambda: _bench("heads_cpu_before.txt"),
    "bench-throughput": lambda: _bench("throughput.txt"),
    "bench-scoring": lambda: _bench("scoring.txt"),
    "bench-vit-adapter": lambda: _bench("vit_adapter.txt"),
}


def fill(text: str) -> str:
    """``text`` with every figures block rendered from the result files."""
    def sub(m: re.Match) -> str:
        name = m["name"]
        if name not in RENDER:
            raise ValueError(f"unknown figures block {name!r}; known: {', '.join(RENDER)}")
        return m.group(1) + RENDER[name]() + m.group(4)

    return BLOCK.sub(sub, text)


# the site's pages `python -m prolab.cli.docs` writes (everything else under docs/ is written by hand)
GENERATED = ("index.md", "reference/cli.md", "reference/configuration.md", "course/notebooks", "results/index.md")


def source_pages(docs: Path | None = None) -> list[Path]:
    """The site's hand-written pages (``docs/**/*.md`` without the generated ones)."""
    docs = docs or paths.repo_root() / "docs"
    return [f for f in sorted(docs.rglob("*.md"))
            if not any(f.relative_to(docs).as_posix().startswith(g) for g in GENERATED)]


def documents() -> list[Path]:
    """The files with figures blocks: the READMEs and the documentation site's hand-written pages."""
    return [paths.repo_root() / "README.md", paths.results_root() / "README.md", *source_pages()]


def main() -> None:
    for f in documents():
        text = f.read_text(encoding="utf-8")
        new = fill(text)
        if new != text:
            atomic_write_text(f, new)
            print(f"updated {f.relative_to(paths.repo_root())}")


if __name__ == "__main__":
    from prolab.entry import entry_point

    raise SystemExit(entry_point(main, "python -m prolab.reports.summary"))
