"""Numbers about a descriptor file for notes and reports: descriptions per class, short and failed classes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .descriptors import load_descriptors, load_meta

PAPER_RANGE = (8, 15)   # descriptions per class in the authors' release (ProLab, arXiv 2312.13764)


def descriptions_table(descriptor_file: str | Path, fewer_than: int = PAPER_RANGE[0]) -> dict[str, Any]:
    """One descriptor file's statistics: descriptions per class (min / mean / max), the classes with fewer than
    ``fewer_than`` (default 8, the low end of the paper's 8-15) and the failed classes its sidecar lists, plus
    how many classes were asked under a prompt name and how many got pooled samples."""
    path = Path(descriptor_file)
    data = load_descriptors(path)
    meta = load_meta(path)
    counts = {c: len(d) for c, d in data.items()}
    n = len(counts)
    pooling = meta.get("pooling") or {}
    return {
        "dataset": meta.get("dataset", path.parent.name),
        "file": path.name,
        "classes": n,
        "descriptions": sum(counts.values()),
        "min": min(counts.values(), default=0),
        "mean": round(sum(counts.values()) / n, 2) if n else 0.0,
        "max": max(counts.values(), default=0),
        f"fewer_than_{fewer_than}": {c: k for c, k in counts.items() if k < fewer_than},
        "failed": dict(meta.get("failures") or {}),
        "prompt_names": len(meta.get("prompt_names") or {}),
        "pooled_classes": len(pooling.get("samples") or {}),
        "samples": sum((pooling.get("samples") or {}).values()),
    }


def format_descriptions_tables(tables: list[dict[str, Any]], fewer_than: int = PAPER_RANGE[0]) -> str:
    """A Markdown table of ``descriptions_table`` results, one row per file."""
    key = f"fewer_than_{fewer_than}"
    lines = [f"| dataset | classes | per class min / mean / max | classes < {fewer_than} | failed | prompt names | "
             "pooled classes (samples) |",
             "|---|---:|---|---:|---|---:|---:|"]
    for t in tables:
        failed = ", ".join(t["failed"]) or "-"
        lines.append(f"| {t['dataset']} | {t['classes']} | {t['min']} / {t['mean']} / {t['max']} | "
                     f"{len(t.get(key, {}))} | {failed} | {t['prompt_names']} | "
                     f"{t['pooled_classes']} ({t['samples']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m prolab.describe.report",
                                description="Descriptions per class, failed classes, prompt names and pooled "
                                            "classes of descriptor files, as a Markdown table.")
    p.add_argument("files", nargs="+", help="descriptor files (<dataset>/<llm>__<prompt>-<id>.json); sidecars "
                                            "(.meta.json) given by a glob are skipped")
    p.add_argument("--fewer_than", type=int, default=PAPER_RANGE[0],
                   help=f"count the classes with fewer descriptions than this (default {PAPER_RANGE[0]})")
    a = p.parse_args(argv)
    files = [f for f in a.files if not f.endswith(".meta.json")]
    for f in files:
        if not Path(f).is_file():
            p.error(f"{f}: no such descriptor file")
    print(format_descriptions_tables([descriptions_table(f, a.fewer_than) for f in files], a.fewer_than))
    return 0


if __name__ == "__main__":
    from prolab.entry import entry_point

    raise SystemExit(entry_point(main, "python -m prolab.describe.report"))
