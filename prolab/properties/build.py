"""Stage 2 end to end: descriptor file -> embeddings (cached) -> clusters -> PropertySpace (saved)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import defaults, offline, paths
from ..datasets import DATASETS, dataset_key, load_class_names
from ..describe.descriptors import load_descriptors, load_meta
from ..describe.prompts import load_prompt
from ..files import environment_info, file_sha256, utc_now
from ..validation import validate
from .clustering import Clustering, ClusteringDefaults, cluster
from .collisions import find_collisions, near_collisions, property_usage, repair_collisions, separate_signatures
from ..embed import Embedder, EmbeddingCache, make_embedder
from .assign import nearest_properties
from .names import nearest_member_names
from .space import PropertySpace, signatures_from_assignments

DEFAULT_EMBEDDER = defaults.EMBEDDER


def default_descriptor_file(dataset: str, llm: str = defaults.LLM, prompt: str = defaults.PROMPT,
                            root: str | Path | None = None) -> Path:
    """The descriptor file `prolab describe` writes for a dataset (name, dataset YAML or class list), an LLM
    and a prompt: ``descriptors/<dataset>/<llm>__<prompt>.json`` (or under ``root``, describe's out_root)."""
    return paths.descriptor_path(dataset_key(dataset), llm, load_prompt(prompt).tag,
                                 root=paths.resolve(root) if root else None)


def default_n_properties(dataset: str, n_descriptions: int) -> int:
    """K when none is given: the paper's K for a paper dataset, a dataset YAML's ``n_properties`` if it sets
    one, else ``defaults.n_properties_rule`` (one property per six descriptions, at least 2)."""
    from ..datasets.spec import is_spec_path, load_spec

    if is_spec_path(dataset) and load_spec(dataset).n_properties:
        return load_spec(dataset).n_properties
    return DATASETS[dataset].n_properties if dataset in DATASETS else defaults.n_properties_rule(n_descriptions)


def _missing_descriptions(dataset: str, dfile: Path) -> FileNotFoundError:
    there = sorted(f.name for f in dfile.parent.glob("*.json") if not f.name.endswith(".meta.json")) \
        if dfile.parent.is_dir() else []
    return FileNotFoundError(
        f"no descriptions of {dataset_key(dataset)!r} at {dfile} (where `prolab describe --dataset {dataset}` "
        f"writes them). Run it first (add --backend llama_cpp for a new class list), or pass --descriptor_file "
        "<the file describe printed> (--descriptor_root <its --out_root> if you gave one)"
        + (f"; files in {dfile.parent}: {', '.join(there)}" if there else ""))


def default_space_path(dataset: str, unseen: list[str] | None = None) -> Path:
    """The kit's default space of a dataset: its default descriptor file, the default embedder, K-Means
    seed 0, the default K, identical signatures repaired (``-repaired`` in the file name where that changed
    anything). Committed for the paper datasets and the embedded default; built here on first use
    otherwise (for your own data: once `prolab describe --dataset my.yaml` has written its descriptions).
    With ``unseen`` classes: the same recipe with those classes held out of the clustering, built on first use
    in the user cache (``<PROLAB_CACHE>/spaces``), never in the committed folder."""
    from ..datasets.spec import is_spec_path

    if dataset not in DATASETS and not is_spec_path(dataset):
        raise ValueError(f"dataset {dataset!r} has no default property space: build one with `prolab properties "
                         "--dataset <class list> --descriptor_file <descriptor file>` and pass its path")
    dfile = default_descriptor_file(dataset)
    if not dfile.exists():
        raise _missing_descriptions(dataset, dfile)
    k = DATASETS[dataset].n_properties if dataset in DATASETS else \
        default_n_properties(dataset, sum(len(v) for v in load_descriptors(dfile).values()))
    # the id the default embedder reports (offline alias, sentence-transformers), without loading the model
    emb_id = f"{offline.EMBEDDER_ALIASES[defaults.EMBEDDER.lower()][0]}__st"
    held = unseen_indices(unseen, load_class_names(dataset), where=f"dataset {dataset}")
    names = [load_class_names(dataset)[c] for c in held]
    root = paths.cache_root() / "spaces" if held else None
    # identical signatures repaired by default: the repaired file when there is one (it exists only where the
    # plain space had collisions), else the plain one; built here (repaired) on first use
    for tag in ("-repaired", ""):
        path = paths.property_space_path(dataset_key(dataset), dfile.stem, emb_id,
                                         method_tag(ClusteringDefaults()) + tag + unseen_tag(names), k, root=root)
        # a plain space with collisions (built with --no-repair, or before repair was the default) is not it
        if path.exists() and not (tag == "" and PropertySpace.load(path).notes.get("collisions_after")):
            return path
    return build_property_space(dataset, progress=False, unseen=names, out_root=root, repair=True).path


def resolve_n_properties(dataset: str, n_properties: int | None, n_descriptions: int, where: str = "") -> int:
    """K for a build: the given value (checked against the descriptions it must cluster) or the default."""
    from ..validation import RULES, check, fail

    check("n_properties", n_properties, RULES["properties"]["n_properties"], where)
    k = default_n_properties(dataset, n_descriptions) if n_properties is None else n_properties
    if k > n_descriptions:
        fail("n_properties", k, f"at most the number of descriptions to cluster ({n_descriptions})", where)
    return k


def method_tag(d: ClusteringDefaults) -> str:
    """``kmeans-s0``, ``gmm-diag-s1``, ``vmf50-s0``; other non-default settings add a short hash."""
    from ..files import stable_hash

    tag = {"kmeans": "kmeans", "gmm": f"gmm-{d.covariance_type}", "vmf": f"vmf{d.kappa:g}"}[d.method]
    base = ClusteringDefaults()
    other = {k: v for k, v in d.as_dict().items()
             if k not in ("method", "seed", "covariance_type", "kappa") and v != getattr(base, k)}
    return f"{tag}-s{d.seed}" + (f"-{stable_hash(other, 6)}" if other else "")


def embed_descriptions(descriptions: dict[str, list[str]], embedder: Embedder, progress: bool = True):
    """(texts, class index per text, embeddings) for a descriptor dict, through the embedding cache."""
    texts = [d for ds in descriptions.values() for d in ds]
    desc_class = np.array([i for i, ds in enumerate(descriptions.values()) for _ in ds], dtype=np.int64)
    x = EmbeddingCache(embedder.embedder_id).encode(embedder, texts, progress=progress)
    return texts, desc_class, x


@dataclass
class BuildOutput:
    space: PropertySpace
    embeddings: np.ndarray        # (n, d) description embeddings
    clustering: Clustering
    collisions_before: list[list[int]]
    path: Path | None


def unseen_indices(unseen, class_names: list[str], where: str = "") -> list[int]:
    """Class indices of ``unseen`` (names, or one comma-separated string), checked: each must be a class, and at
    least one class must stay seen."""
    from ..datasets import class_key

    if not unseen:
        return []
    names = [n.strip() for n in (unseen.split(",") if isinstance(unseen, str) else unseen) if str(n).strip()]
    keys = {class_key(c): i for i, c in enumerate(class_names)}
    bad = [n for n in names if class_key(n) not in keys]
    if bad:
        import difflib

        hint = {n: difflib.get_close_matches(n, class_names, 1) for n in bad}
        raise ValueError(f"{where}: unseen classes {bad} are not classes of it"
                         + "".join(f"; did you mean {h[0]!r} for {n!r}?" for n, h in hint.items() if h))
    idx = sorted({keys[class_key(n)] for n in names})
    if len(idx) >= len(class_names):
        raise ValueError(f"{where}: unseen = {names} leaves no seen class to train on")
    return idx


def unseen_tag(names: list[str]) -> str:
    """File-name part of a space with held-out classes (empty when none)."""
    return f"-unseen-{paths.slug('-'.join(names))}" if names else ""


def _release_names(dfile: Path, class_names: list[str]) -> dict:
    """An imported release file's own class spellings ({ours: theirs}, only where they differ), kept so that
    ``PropertySpace.to_release`` writes them back ('storage tank', not 'tank')."""
    names = load_meta(dfile).get("release_names") or []
    if len(names) != len(class_names):
        return {}
    differ = {ours: theirs for ours, theirs in zip(class_names, names) if ours != theirs}
    return {"release_names": differ} if differ else {}


def build_property_space(dataset: str, descriptor_file: str | Path | None = None,
                         embedder: str | Embedder = defaults.EMBEDDER, embedder_kind: str = defaults.EMBEDDER_KIND,
                         n_properties: int | None = None, method: str | None = None, seed: int | None = None,
                         clustering: ClusteringDefaults | None = None, repair: bool = False,
                         separate: bool = False, out_root: str | Path | None = None, save: bool = True,
                         progress: bool = True, descriptor_root: str | Path | None = None,
                         unseen: list[str] | None = None) -> BuildOutput:
    """Build (and save) the property space of ``dataset`` (a registered name, a dataset YAML or a class list)
    from a descriptor file.

    ``descriptor_file`` defaults to what `prolab describe` wrote for the dataset (Qwen, structured prompt;
    under ``descriptor_root`` if describe had an out_root); ``n_properties`` to ``default_n_properties``.
    ``repair`` makes colliding signatures unique (``collisions.repair_collisions``); ``separate`` also pulls
    near-collisions apart and splits over-shared properties (``collisions.separate_signatures``).
    ``unseen`` (class names) holds classes out of the clustering: the bank is built from the other classes'
    descriptions only, and each unseen class's descriptions are then assigned to their nearest property
    (``assign.nearest_properties``), as a class never labelled in training is reached at test time.
    """
    key = dataset_key(dataset)
    class_names = load_class_names(dataset)
    held = unseen_indices(unseen, class_names, where=f"dataset {dataset}")
    dfile = paths.resolve(descriptor_file) if descriptor_file else default_descriptor_file(dataset, root=descriptor_root)
    if not dfile.exists():
        raise _missing_descriptions(dataset, dfile) if not descriptor_file else \
            FileNotFoundError(f"descriptor file not found: {dfile}")
    descriptions = load_descriptors(dfile, class_names)
    empty = [c for c, d in descriptions.items() if not d]
    if empty:  # an all-zero signature can never be predicted and gets no gradient
        raise ValueError(f"{dfile.name}: classes without descriptions: {empty}; describe them again "
                         "(prolab describe) or edit the file before building a property space")
    n_desc = sum(len(d) for d in descriptions.values())
    if n_desc == 0:
        raise ValueError(f"{dfile} holds no descriptions")
    # every setting is checked before the (slow) embedding starts
    k = resolve_n_properties(dataset, n_properties, n_desc, where=dfile.name)
    cdef = clustering or ClusteringDefaults()
    cdef = replace(cdef, method=method or cdef.method, seed=cdef.seed if seed is None else seed)
    validate("properties", {"method": cdef.method, "seed": cdef.seed, "embedder_kind": embedder_kind})
    emb = make_embedder(embedder, embedder_kind, progress=progress) if isinstance(embedder, str) else embedder
    texts, desc_class, x = embed_descriptions(descriptions, emb, progress=progress)
    seen = ~np.isin(desc_class, held)
    result = cluster(x[seen], k, cdef)
    labels = np.empty(len(x), dtype=np.int64)
    labels[seen] = result.labels
    labels[~seen] = nearest_properties(result.centres, x[~seen])
    kk = result.centres.shape[0]
    space = PropertySpace(
        bank=result.centres, signatures=signatures_from_assignments(desc_class, labels, len(class_names), kk),
        class_names=class_names, descriptions=texts, desc_class=desc_class, desc_property=labels,
        property_names=[""] * kk, embedder_id=emb.embedder_id,
        clustering={**cdef.as_dict(), "n_properties_requested": k, "n_empty_dropped": result.n_empty,
                    "inertia": result.inertia},
        dataset=key, source={"descriptor_file": dfile.name, "sha256": file_sha256(dfile),
                             **_release_names(dfile, class_names)})
    if held:
        space.notes["unseen"] = [class_names[c] for c in held]
    space.property_names = nearest_member_names(space, x)
    before = find_collisions(space.signatures)
    space.notes["collisions_before"] = [[class_names[c] for c in g] for g in before]
    space.notes["near_before"] = len(near_collisions(space.signatures))
    if separate:
        separate_signatures(space, x)
    elif repair:
        repair_collisions(space, x)
    space.notes["collisions_after"] = [[class_names[c] for c in g] for g in find_collisions(space.signatures)]
    space.notes["near_after"] = len(near_collisions(space.signatures))
    space.notes["usage"] = property_usage(space)
    path = None
    if save:
        # "-repaired" only when the repair changed something: a space without collisions is the same file either way
        tag = method_tag(cdef) + ("-separated" if separate else "-repaired" if repair and before else "") + unseen_tag(
            [class_names[c] for c in held])
        # the file is named after the K it holds (a --separate space may have split properties)
        path = paths.property_space_path(key, dfile.stem, emb.embedder_id, tag, space.n_properties,
                                         root=paths.resolve(out_root) if out_root else None)
        space.save(path, extra_meta={"created": utc_now(), "environment": environment_info()})
    return BuildOutput(space, x, result, before, path)
