"""Quality statistics of descriptions: counts, lengths, duplicates, failures; and side-by-side comparisons."""
from __future__ import annotations

import re
from collections import defaultdict

import pandas as pd

from .prompts import Prompt


def _words(text: str) -> int:
    return len(text.split())


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower()).strip()


def per_class_table(descriptions: dict[str, list[str]], failures: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per class: number of descriptions, mean words, and the failure reason if any."""
    failures = failures or {}
    rows = [{"class_name": c, "n_descriptions": len(d),
             "mean_words": round(sum(map(_words, d)) / len(d), 1) if d else 0.0,
             "failure": failures.get(c, "")} for c, d in descriptions.items()]
    return pd.DataFrame(rows).set_index("class_name")


def duplicates(descriptions: dict[str, list[str]]) -> pd.DataFrame:
    """Descriptions (case and punctuation ignored) that occur more than once, and in which classes.

    Shared descriptions are not errors: they are what makes classes share properties. Many exact repeats
    inside one class would point at a parsing or looping problem."""
    where: dict[str, list[str]] = defaultdict(list)
    text: dict[str, str] = {}
    for c, ds in descriptions.items():
        for d in ds:
            k = _key(d)
            where[k].append(c)
            text.setdefault(k, d)
    rows = [{"description": text[k], "n": len(cs), "classes": ", ".join(dict.fromkeys(cs))}
            for k, cs in where.items() if len(cs) > 1]
    return pd.DataFrame(rows, columns=["description", "n", "classes"]).sort_values("n", ascending=False,
                                                                                 ignore_index=True)


def summary(descriptions: dict[str, list[str]], failures: dict[str, str] | None = None) -> pd.Series:
    """Dataset-level statistics in one Series."""
    counts = [len(d) for d in descriptions.values()]
    all_d = [d for ds in descriptions.values() for d in ds]
    dup = duplicates(descriptions)
    return pd.Series({
        "classes": len(counts),
        "descriptions": len(all_d),
        "per class (mean)": round(sum(counts) / max(1, len(counts)), 2),
        "per class (min)": min(counts, default=0),
        "per class (max)": max(counts, default=0),
        "words per description (mean)": round(sum(map(_words, all_d)) / max(1, len(all_d)), 2),
        "unique descriptions": len({_key(d) for d in all_d}),
        "repeated descriptions": int(len(dup)),
        "failed classes": len(failures or {}),
    }, dtype=object)   # object: counts print as integers, not as 4.00


def side_by_side(replies: dict[str, dict[str, list[str]]], class_names: list[str], styled: bool = True):
    """Columns = prompts (or models), rows = classes, cells = the descriptions as a bulleted block."""
    data = {name: [("\n".join(f"- {d}" for d in descs.get(c, [])) or "(none)") for c in class_names]
            for name, descs in replies.items()}
    df = pd.DataFrame(data, index=pd.Index(class_names, name="class_name"))
    if not styled:
        return df
    return df.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left", "vertical-align": "top"})


def compare_results(results: dict) -> pd.DataFrame:
    """Reply statistics per prompt (columns) from ``{name: RetrievalResult}``."""
    cols = {}
    for name, r in results.items():
        s = summary(r.descriptions, r.failures)
        s["asks per class (mean)"] = round(sum(c.attempts for c in r.classes) / max(1, len(r.classes)), 2)
        s["classes needing a re-ask"] = sum(c.attempts > 1 for c in r.classes)
        cols[name] = s
    return pd.DataFrame(cols)


def transcript(prompt: Prompt, class_name: str) -> str:
    """The rendered chat, as text a person can read."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt.render(class_name))
