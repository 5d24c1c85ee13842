"""The release's property partition: ``property_<dataset>.json`` -> a PropertySpace, and how it compares.

The authors ship, per dataset, ``{property name: ["class: description", ...], ...}``: each property (a K-Means
cluster of description embeddings) lists its member descriptions, each prefixed by the class it describes.

- ``read_partition``: parse and validate the file; release class spellings (``"bed "``, ``"Traffic Light"``,
  ``"windowpane, window"``, ``"pottedplant"``, ADE20K's ``"storage tank"`` for mmseg's ``tank``) are matched to ours
  and kept (``release_names``);
- ``partition_space``: the PropertySpace whose signatures are that partition (class c has property k iff one of
  its descriptions is a member of k) and whose bank is the mean of each property's member embeddings (the
  description after the colon is embedded, L2-normalised, as the kit embeds its own descriptions), i.e. what a
  K-Means centre is;
- ``partition_report`` / ``partition_report_lines``: statistics of a space and, given a reference space over the
  same classes, how well the two agree (class neighbourhoods; ARI when the descriptions are the same);
- ``save_partition_space`` / ``kit_reference``: what `prolab properties --release_partition` saves and compares
  with.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ... import defaults, paths
from ...datasets import class_key, dataset_key, load_class_names
from ...properties.space import PropertySpace, signatures_from_assignments

METHOD = "release_partition"
NEIGHBOURS = 5  # k of the class-neighbourhood overlap


# -- reading ---------------------------------------------------------------------------------------------------

def _no_duplicate_keys(path: Path):
    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"{path}: property {k!r} appears twice (JSON keys must be unique)")
            seen.add(k)
        return dict(pairs)
    return hook


def _squash(key: str) -> str:
    return key.replace(" ", "")


def known_aliases(dataset: str | Path | None, class_names: list[str]) -> dict[str, str]:
    """The names the kit already knows ``dataset``'s classes under, ``{other name: our class name}``: the dataset's
    prompt names (``prolab.describe.senses.prompt_names``, ``prompt_names/<dataset>.json``: ADE20K ``tank`` is
    "storage tank", the spelling the authors' ADE20K files use), limited to the classes of ``class_names``.
    ``{}`` without a dataset or for one without a prompt-name file."""
    if dataset is None:
        return {}
    from ...describe.senses import prompt_names

    ours = {class_key(n): n for n in class_names}
    return {prompt: ours[class_key(name)] for name, prompt in prompt_names(dataset).items()
            if class_key(name) in ours}


class _ClassMatcher:
    """Release class name -> our class index: equal ``class_key`` (case, spaces, ``_-./`` ignored, stripped),
    else equal with no separators at all (``pottedplant``), else a name the kit knows the class under (``known``,
    ``known_aliases``: ``storage tank`` -> ``tank``), each rule tried on the whole name and then on the first
    comma-separated part of a fuller name that matches (``windowpane, window``); ``aliases`` ({release name: our
    name}, the user's) come first."""

    def __init__(self, class_names: list[str], aliases: dict[str, str] | None = None,
                 known: dict[str, str] | None = None):
        self.class_names = class_names
        self.key = {}
        self.squashed: dict[str, set[int]] = {}
        for i, n in enumerate(class_names):
            self.key.setdefault(class_key(n), i)
            self.squashed.setdefault(_squash(class_key(n)), set()).add(i)
        self.aliases = {}
        for release, ours in (aliases or {}).items():
            if class_key(ours) not in self.key:
                raise ValueError(f"alias {release!r} -> {ours!r}: {ours!r} is not one of the classes")
            self.aliases[class_key(release)] = self.key[class_key(ours)]
        # tried after the class names themselves, so a known name that is another class's own name never wins
        self.known: dict[str, set[int]] = {}
        for other, ours in (known or {}).items():
            if class_key(ours) in self.key:
                self.known.setdefault(_squash(class_key(other)), set()).add(self.key[class_key(ours)])

    def _one(self, name: str) -> set[int]:
        k = class_key(name)
        if k in self.key:
            return {self.key[k]}
        return set(self.squashed.get(_squash(k), ()) or self.known.get(_squash(k), ()))

    def is_alias(self, name: str) -> bool:
        """Whether ``name`` is one of the user's alias spellings."""
        return class_key(name) in self.aliases

    def __call__(self, name: str, parts: bool = True) -> int | None:
        """Our class index of release class ``name`` (None: no class); ``parts=False`` tries only the whole name."""
        k = class_key(name)
        if k in self.aliases:
            return self.aliases[k]
        found = self._one(name)
        for part in name.split(",") if parts and not found and "," in name else ():
            found = self._one(part) if part.strip() else set()
            if found:  # a fuller name lists its main name first ("screen door, screen")
                break
        if len(found) > 1:
            raise ValueError(f"release class {name!r} matches several classes: "
                             f"{sorted(self.class_names[i] for i in found)}; pass aliases")
        return next(iter(found)) if found else None


def read_partition(path: str | Path, class_names: list[str], aliases: dict[str, str] | None = None,
                   dataset: str | Path | None = None) -> dict:
    """Parse and validate a release partition file against ``class_names`` (ours, in label order).

    Returns ``{"file", "path", "sha256" (of the file's bytes, full), "class_names", "property_names" (file order),
    "members" (per property: [(class index, description), ...] in file order), "release_names" ({our name:
    the release's first spelling}), "duplicates_dropped" (how many repeated entries within one property were
    dropped), "duplicate_entries"}``.
    Entries are split on the first ": " (descriptions may hold colons), or on a later one where the text before it
    is a class whose name holds ": " itself; an entry that reads both ways (classes ``sky`` and ``sky: blue``,
    entry ``sky: blue: ...``) is an error unless ``aliases`` name exactly one of the two spellings. Blank
    property names are refused; repeated entries are dropped and listed (``duplicate_entries``: [(property,
    entry), ...]). Class names are matched as
    ``_ClassMatcher`` says: ``aliases`` ({release name: our name}) first, then our spellings, then, with
    ``dataset`` (the registered name ``class_names`` come from), the names the kit knows its classes under
    (``known_aliases``: the prompt-name table, e.g. ADE20K's "storage tank")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"release partition file not found: {path}")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty mapping {{property name: [\"class: description\", ...]}}, "
                         f"got {type(data).__name__}{' (empty)' if isinstance(data, dict) else ''}")
    match = _ClassMatcher(list(class_names), aliases, known_aliases(dataset, list(class_names)))
    property_names, members, release_names, unknown = [], [], {}, {}
    duplicates = []
    for prop, entries in data.items():
        if not prop.strip():   # a blank name would be a property no report or bank row can name
            raise ValueError(f"{path}: property {prop!r} has a blank name; give every property a name (its entries: "
                             f"{entries!r:.120})")
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: property {prop!r} must map to a non-empty list of \"class: description\" "
                             f"strings, got {entries!r:.120}")
        seen, rows = set(), []
        for entry in entries:
            cls, sep, desc = entry.partition(": ") if isinstance(entry, str) else ("", "", "")
            if not sep or not cls.strip() or not desc.strip():
                raise ValueError(f"{path}: property {prop!r}: entry {entry!r:.160} is not \"class: description\"")
            readings = _readings(entry, match)
            if len(readings) > 1:   # the user's alias of one spelling decides; otherwise nothing may guess
                readings = [r for r in readings if match.is_alias(r[1])] or readings
            if len(readings) > 1:
                raise ValueError(_ambiguous(path, prop, entry, readings, class_names))
            if not readings:
                unknown.setdefault(cls, (prop, entry))
                continue
            c, cls, desc = readings[0]
            release_names.setdefault(class_names[c], cls)
            row = (c, desc.strip())
            if row in seen:
                duplicates.append((prop, entry))
                continue
            seen.add(row)
            rows.append(row)
        property_names.append(prop)
        members.append(rows)
    if unknown:
        cls, (prop, entry) = next(iter(unknown.items()))
        more = f" (and {len(unknown) - 1} more: {sorted(unknown)[:10]})" if len(unknown) > 1 else ""
        known = f" and the names in prolab/describe/prompt_names/{dataset_key(dataset)}.json" \
            if known_aliases(dataset, list(class_names)) else ""
        raise ValueError(f"{path}: class {cls!r} (property {prop!r}, entry {entry!r:.160}) matches none of the "
                         f"{len(class_names)} classes{more}; classes are matched ignoring case, spaces and "
                         f"_-./ separators{known}; map other spellings to a class with --aliases "
                         f"'{cls.strip()}=<class>' (aliases={{{cls.strip()!r}: <class>}} in Python)")
    return {"file": path.name, "path": str(path), "sha256": hashlib.sha256(raw).hexdigest(),
            "class_names": list(class_names), "property_names": property_names, "members": members,
            "release_names": release_names, "duplicates_dropped": len(duplicates), "duplicate_entries": duplicates}


def _readings(entry: str, match: _ClassMatcher) -> list[tuple[int, str, str]]:
    """Every way to read ``entry`` as "class: description": (class index, release class, description) for each
    ": " whose left part names a class and whose right part is not blank. The first split uses every matching
    rule; a later one only whole names (a class whose own name holds ": "), so a description's text is never
    taken for a class by a looser rule."""
    out, pos, first = [], entry.find(": "), True
    while pos != -1:
        cls, desc = entry[:pos], entry[pos + 2:]
        if cls.strip() and desc.strip():
            c = match(cls, parts=first)
            if c is not None:
                out.append((c, cls, desc))
        pos, first = entry.find(": ", pos + 1), False
    return out


def _ambiguous(path: Path, prop: str, entry: str, readings, class_names: list[str]) -> str:
    ways = " or as ".join(f"class {class_names[c]!r} with description {d.strip()!r:.60}" for c, _, d in readings)
    fixes = " or ".join(f"--aliases '{r.strip()}={class_names[c]}'" for c, r, _ in readings)
    return (f"{path}: property {prop!r}: entry {entry!r:.160} is ambiguous: it reads as {ways}; say which class the "
            f"file means with {fixes} (aliases={{release spelling: class}} in Python)")


# -- the space -------------------------------------------------------------------------------------------------

def partition_space(path: str | Path, dataset: str, embedder="all-MiniLM-L6-v2",
                    embedder_kind: str = defaults.EMBEDDER_KIND, progress: bool = True,
                    aliases: dict[str, str] | None = None) -> PropertySpace:
    """The PropertySpace of ``dataset`` (registered name, dataset YAML or class list) given by a release
    partition: signatures and description -> property table from the file, bank = per property the mean of its
    members' L2-normalised embeddings under ``embedder`` (a name, or an ``Embedder`` already loaded).
    Classes the file never mentions get an all-zero signature (listed in ``notes["classes_without_properties"]``).
    Release class spellings are matched as ``read_partition`` says (``aliases`` first, then the dataset's known
    names)."""
    from ...properties.collisions import find_collisions, property_usage
    from ...embed.cache import EmbeddingCache
    from ...embed.embedders import make_embedder

    class_names = load_class_names(dataset)
    part = read_partition(path, class_names, aliases, dataset=dataset)
    # descriptions in class order (PropertySpace's convention), file order within a class
    flat = sorted(((c, i, d, k) for k, rows in enumerate(part["members"]) for i, (c, d) in enumerate(rows)),
                  key=lambda t: (t[0], t[3], t[1]))
    texts = [d for _, _, d, _ in flat]
    desc_class = np.array([c for c, _, _, _ in flat], dtype=np.int64)
    desc_property = np.array([k for _, _, _, k in flat], dtype=np.int64)
    emb = make_embedder(embedder, embedder_kind) if isinstance(embedder, str) else embedder
    x = EmbeddingCache(emb.embedder_id).encode(emb, texts, progress=progress).astype(np.float64)
    x /= np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    n_prop = len(part["property_names"])
    bank = np.zeros((n_prop, x.shape[1]), dtype=np.float64)
    np.add.at(bank, desc_property, x)
    bank /= np.bincount(desc_property, minlength=n_prop)[:, None]  # every property has at least one member
    space = PropertySpace(
        bank=bank.astype(np.float32),
        signatures=signatures_from_assignments(desc_class, desc_property, len(class_names), n_prop),
        class_names=class_names, descriptions=texts, desc_class=desc_class, desc_property=desc_property,
        property_names=list(part["property_names"]), embedder_id=emb.embedder_id, clustering={"method": METHOD},
        dataset=dataset_key(dataset),
        source={"partition_file": part["file"], "sha256": part["sha256"], "release_names": part["release_names"]})
    empty = space.signatures.sum(1) == 0
    space.notes["classes_without_properties"] = [c for c, e in zip(class_names, empty) if e]
    space.notes["duplicates_dropped"] = part["duplicates_dropped"]
    if part["duplicate_entries"]:   # reported by partition_report_lines
        space.notes["duplicate_examples"] = [f"{p}: {e}" for p, e in part["duplicate_entries"][:5]]
    space.notes["collisions"] = [[class_names[c] for c in g] for g in find_collisions(space.signatures)
                                 if not empty[g[0]]]
    space.notes["usage"] = property_usage(space)
    return space.check()


def partition_space_path(space: PropertySpace, out_root: str | Path | None = None) -> Path:
    """``properties/<dataset>/release-partition-<file stem>__<embedder>__release-k<K>.safetensors``."""
    stem = Path(space.source["partition_file"]).stem
    return paths.property_space_path(space.dataset, f"release-partition-{paths.slug(stem)}", space.embedder_id,
                                     "release", space.n_properties,
                                     root=paths.resolve(out_root) if out_root else None)


def save_partition_space(space: PropertySpace, out_root: str | Path | None = None) -> Path:
    from ...files import environment_info, utc_now

    return space.save(partition_space_path(space, out_root),
                      extra_meta={"created": utc_now(), "environment": environment_info()})


def kit_reference(dataset: str) -> Path | None:
    """The kit's default space of a registered dataset (default descriptors, embedder, K-Means seed 0, the
    paper's K) if its file exists already; never builds one."""
    from ... import offline
    from ...datasets import DATASETS
    from ...properties.build import default_descriptor_file, method_tag
    from ...properties.clustering import ClusteringDefaults

    if dataset not in DATASETS:
        return None
    try:
        dfile = default_descriptor_file(dataset)
        emb_id = f"{offline.EMBEDDER_ALIASES[defaults.EMBEDDER.lower()][0]}__st"
        path = paths.property_space_path(dataset_key(dataset), dfile.stem, emb_id, method_tag(ClusteringDefaults()),
                                         DATASETS[dataset].n_properties)
    except (KeyError, OSError, ValueError):
        return None
    return path if path.exists() else None


def partition_command(partition: str | Path, dataset: str, embedder: str = defaults.EMBEDDER,
                      embedder_kind: str = defaults.EMBEDDER_KIND, out_root: str | Path | None = None,
                      release_export: str | Path | None = None, aliases: dict[str, str] | None = None):
    """`prolab properties --release_partition`: build and save the space, yield the lines to print (the report,
    against the kit's default space when its file exists). ``aliases``: {release name: our class name} for
    spellings no rule matches."""
    space = partition_space(partition, dataset, embedder=embedder, embedder_kind=embedder_kind, aliases=aliases)
    yield f"{space}\n  -> {save_partition_space(space, out_root)}"
    ref_path = kit_reference(dataset)
    reference = PropertySpace.load(ref_path) if ref_path else None
    for line in partition_report_lines(partition_report(space, reference)):
        yield f"  {line}"
    if ref_path:
        yield f"  (reference: {ref_path})"
    else:
        yield f"  (no kit space of {dataset} to compare with: `prolab properties --dataset {dataset}` builds one)"
    if release_export:
        yield f"  release layout -> {space.to_release(release_export)}"


# -- the report ------------------------------------------------------------------------------------------------

def _spread(v: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(v.mean()), 3), "min": int(v.min()), "max": int(v.max())} if len(v) else \
        {"mean": 0.0, "min": 0, "max": 0}


def neighbourhood_overlap(sig_a: np.ndarray, sig_b: np.ndarray, k: int = NEIGHBOURS) -> tuple[float | None, int]:
    """(mean over classes of |top-k neighbours in A ∩ top-k in B| / k, number of classes averaged).

    Neighbours are the other classes by signature cosine, ties broken by class index (cosines rounded to 6
    decimals first, so equal values compare equal); classes with an all-zero signature in either space have no
    neighbourhood and are left out. ``k`` is capped at C - 1."""
    from ...properties.analysis import class_similarity

    c = len(sig_a)
    k = min(k, c - 1)
    valid = np.flatnonzero((sig_a.sum(1) > 0) & (sig_b.sum(1) > 0))
    if k < 1 or not len(valid):
        return None, 0
    idx = np.arange(c)

    def top(sim: np.ndarray, i: int) -> set[int]:
        s = np.round(sim[i].astype(np.float64), 6)
        order = [j for j in np.lexsort((idx, -s)) if j != i]
        return set(order[:k])

    sa, sb = class_similarity(sig_a), class_similarity(sig_b)
    return float(np.mean([len(top(sa, i) & top(sb, i)) / k for i in valid])), len(valid)


def _aligned_assignments(a: PropertySpace, b: PropertySpace):
    """The two description -> property assignments over the same (class, description) items, in one order;
    None when the descriptions differ or a space has no assignment table."""
    if (a.desc_property < 0).any() or (b.desc_property < 0).any():
        return None
    ka = list(zip(a.desc_class.tolist(), a.descriptions))
    kb = list(zip(b.desc_class.tolist(), b.descriptions))
    if Counter(ka) != Counter(kb) or not ka:
        return None
    if len(set(ka)) != len(ka):  # repeated items (a description in two properties): only the same order aligns
        return (a.desc_property, b.desc_property) if ka == kb else None
    where = {key: i for i, key in enumerate(kb)}
    return a.desc_property, b.desc_property[[where[key] for key in ka]]


def partition_report(space: PropertySpace, reference: PropertySpace | None = None,
                     k: int = NEIGHBOURS) -> dict[str, Any]:
    """Statistics of ``space``; with ``reference`` (same classes) its agreement with it.

    Keys: classes, properties, descriptions, unique_signatures (distinct rows over all classes), collisions
    (groups of classes with the same non-empty signature), classes_without_properties, properties_per_class and
    descriptions_per_class ({mean, min, max}), duplicates_dropped and duplicate_examples (repeated entries of a
    partition file, ``read_partition``). With a reference: reference (what it is), neighbour_k,
    neighbour_overlap (``neighbourhood_overlap``) and neighbour_classes, ARI and matched_overlap (Hungarian) of
    the description -> property assignments (None unless both spaces hold the same descriptions),
    class_similarity_correlation and matched_property_jaccard (``analysis.agreement``)."""
    from ...properties.collisions import find_collisions

    y = space.signatures
    empty = y.sum(1) == 0
    out: dict[str, Any] = {
        "classes": space.n_classes, "properties": space.n_properties, "descriptions": len(space.descriptions),
        "unique_signatures": int(len(np.unique(y, axis=0))) if len(y) else 0,
        "collisions": [[space.class_names[c] for c in g] for g in find_collisions(y) if not empty[g[0]]],
        "classes_without_properties": [c for c, e in zip(space.class_names, empty) if e],
        "properties_per_class": _spread(y.sum(1)),
        "descriptions_per_class": _spread(np.bincount(space.desc_class, minlength=space.n_classes)),
        "duplicates_dropped": int(space.notes.get("duplicates_dropped") or 0),
        "duplicate_examples": list(space.notes.get("duplicate_examples") or []),
    }
    if reference is None:
        return out
    if [class_key(c) for c in reference.class_names] != [class_key(c) for c in space.class_names]:
        raise ValueError(f"the reference space has other classes ({reference.n_classes}: "
                         f"{reference.class_names[:5]}...) than the partition ({space.n_classes}: "
                         f"{space.class_names[:5]}...); compare spaces of the same dataset")
    from sklearn.metrics import adjusted_rand_score

    from ...properties.analysis import agreement, hungarian_overlap

    overlap, n = neighbourhood_overlap(y, reference.signatures, k)
    out["reference"] = {"dataset": reference.dataset, "properties": reference.n_properties,
                        "descriptions": len(reference.descriptions), "embedder_id": reference.embedder_id,
                        "source": {k_: v for k_, v in reference.source.items() if k_ != "release_names"}}
    out["neighbour_k"] = min(k, space.n_classes - 1)
    out["neighbour_overlap"] = None if overlap is None else round(overlap, 4)
    out["neighbour_classes"] = n
    pair = _aligned_assignments(space, reference)
    out["ARI"] = None if pair is None else round(float(adjusted_rand_score(*pair)), 4)
    out["matched_overlap"] = None if pair is None else round(hungarian_overlap(*pair), 4)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = reference if reference.class_names == space.class_names else _renamed(reference, space.class_names)
        agr = agreement(space, ref)
    for key, name in (("class-similarity correlation", "class_similarity_correlation"),
                      ("matched property Jaccard", "matched_property_jaccard")):
        v = agr.get(key)
        out[name] = None if v is None or not np.isfinite(v) else v
    return out


def _renamed(space: PropertySpace, class_names: list[str]) -> PropertySpace:
    from dataclasses import replace

    return replace(space, class_names=list(class_names))


def partition_report_lines(report: dict[str, Any]) -> list[str]:
    """Short human-readable lines of a ``partition_report``."""
    ppc, dpc = report["properties_per_class"], report["descriptions_per_class"]
    lines = [f"{report['classes']} classes, {report['properties']} properties, {report['descriptions']} descriptions",
             f"unique signatures: {report['unique_signatures']} of {report['classes']} classes",
             f"properties per class: mean {ppc['mean']}, min {ppc['min']}, max {ppc['max']}",
             f"descriptions per class: mean {dpc['mean']}, min {dpc['min']}, max {dpc['max']}"]
    lines += [f"collision: {' = '.join(g)}" for g in report["collisions"]]
    if report.get("duplicates_dropped"):
        ex = report.get("duplicate_examples") or []
        lines.append(f"duplicate entries dropped: {report['duplicates_dropped']} (the same class and description "
                     f"twice in one property){', e.g. ' + '; '.join(repr(e) for e in ex[:3]) if ex else ''}")
    if report["classes_without_properties"]:
        w = report["classes_without_properties"]
        lines.append(f"classes without properties ({len(w)}): {', '.join(w[:12])}{' ...' if len(w) > 12 else ''}")
    if "reference" in report:
        r = report["reference"]
        lines.append(f"reference: {r['dataset']} space with {r['properties']} properties, {r['descriptions']} "
                     f"descriptions ({', '.join(f'{k}={v}' for k, v in r['source'].items())})")
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"neighbour overlap@{report['neighbour_k']}: {fmt(report['neighbour_overlap'])} "
                     f"(over {report['neighbour_classes']} classes)")
        lines.append(f"ARI: {fmt(report['ARI'])}" + ("" if report["ARI"] is not None else
                                                      " (the spaces hold different descriptions)"))
        lines.append(f"class-similarity correlation: {fmt(report['class_similarity_correlation'])}, "
                     f"matched property Jaccard: {fmt(report['matched_property_jaccard'])}")
    return lines


def release_agreement_lines(release_partition: str | Path | None, dataset: str, space: PropertySpace,
                            embedder="all-MiniLM-L6-v2", embedder_kind: str = defaults.EMBEDDER_KIND,
                            progress: bool = True) -> list[str]:
    """Notebook 04's view of the authors' partition of ``dataset``: its statistics and its agreement with
    ``space`` (a space the kit built for that dataset), as lines; with ``release_partition`` None, how to get
    one instead."""
    if release_partition is None:
        return ["No release partition given (release_partition = None). The authors publish one per dataset as "
                "property_<dataset>.json; set release_partition to its path to see its statistics and its "
                "agreement with this space."]
    path = Path(release_partition).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"release_partition = {str(release_partition)!r}: no such file")
    theirs = partition_space(path, dataset, embedder=embedder, embedder_kind=embedder_kind, progress=progress)
    return [f"The authors' partition {path.name}:"] + partition_report_lines(partition_report(theirs, space))
