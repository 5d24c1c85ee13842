"""Stage 1 end to end: class list -> descriptor file (+ sidecar), through the call cache."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..datasets import dataset_key as _dataset_key, load_class_names
from ..files import dumps_json, environment_info, utc_now
from .backends import Backend, GenerationParams, ReplayMissError, make_backend
from .cache import CallCache
from .descriptors import descriptor_stats, load_meta, save_descriptors
from .prompts import Prompt, load_prompt
from .retrieval import RetrievalDefaults, RetrievalResult, embedder_name, retrieve
from .senses import resolve_prompt_names


def open_call_cache(cache_path: str | Path | None = None, readonly: bool = False) -> CallCache:
    """The call cache a describe reads and writes: the named file alone, or by default the user's
    (``paths.user_call_cache_path``, written) over the kit's committed one (read only)."""
    if cache_path:
        return CallCache(paths.resolve(cache_path), readonly=readonly)
    return CallCache(paths.user_call_cache_path(), readonly=readonly, also_read=(paths.call_cache_path(),))


@dataclass
class DescribeOutput:
    path: Path
    result: RetrievalResult
    meta: dict[str, Any]


def describe_dataset(dataset: str, backend: str | Backend = "replay", llm: str | None = None,
                     prompt: str | Prompt = "structured", out_root: str | Path | None = None,
                     cache_path: str | Path | None = None, params: GenerationParams = GenerationParams(),
                     defaults: RetrievalDefaults = RetrievalDefaults(), base_url: str | None = None,
                     api_key_env: str | None = None, progress: bool = True,
                     prompt_names: bool | dict[str, str] = False, embedder: Any = None) -> DescribeOutput:
    """Describe every class of ``dataset`` (a registered name or a class-list file) and write
    ``descriptors/<dataset>/<llm>__<prompt>.json``.

    ``backend`` is ``replay`` (cache only), ``llama_cpp``, ``openai`` or ``transformers``, or a ready Backend.
    ``llm`` defaults to the packaged Qwen GGUF. Completed calls are in the cache, so a killed run resumes.

    Opt-in (the defaults ask every class once, under its own name, as always):
    ``prompt_names=True`` asks the classes listed in ``prolab/describe/prompt_names/<dataset>.json`` under their
    prompt name (``tank`` as "storage tank"; a dict gives the mapping itself, e.g. one read from a sidecar); the
    file stays keyed by the class names and the sidecar records ``"prompt_names"``.
    ``defaults.min_pooled > 0`` pools sampled replies for classes with fewer descriptions (``RetrievalDefaults``);
    ``embedder`` (a callable, an Embedder, or a model name such as ``all-MiniLM-L6-v2``) also drops
    near-duplicates by cosine. The sidecar records the settings and the samples per class under ``"pooling"``;
    ``replay_settings(meta)`` gives the arguments that replay such a file.
    """
    class_names = load_class_names(dataset)
    dataset_key = _dataset_key(dataset)
    # where the file goes is checked before any model call: never a kit folder by accident, never a folder
    # that another dataset (same name up to case) writes
    paths.guard_kit_folder(dataset, dataset_key, out_root, "descriptors")
    paths.guard_case_collision(paths.descriptor_path(dataset_key, "x", "x", root=paths.resolve(out_root)
                                                     if out_root else None).parent, dataset_key)
    names = resolve_prompt_names(dataset, class_names, prompt_names)
    prompt = load_prompt(prompt) if isinstance(prompt, str) else prompt
    if isinstance(backend, str):
        backend = make_backend(backend, llm, base_url=base_url, api_key_env=api_key_env)
    cache = open_call_cache(cache_path)
    try:
        result = retrieve(class_names, backend, prompt, cache, params, defaults, progress=progress,
                          prompt_names=names or None, embedder=embedder if defaults.pooling else None)
    except ReplayMissError as e:
        missing = getattr(e, "missing", [])
        if not missing:
            raise
        err = ReplayMissError(f"{dataset}: {e}. The command that fills them:\n  "
                              + fill_command(dataset, backend, prompt, cache_path, params, defaults=defaults,
                                             prompt_names=bool(names), embedder=embedder))
        err.missing = missing
        raise err from None
    out = paths.descriptor_path(dataset_key, backend.model_id, prompt.tag,
                                root=paths.resolve(out_root) if out_root else None)
    meta = {
        "dataset": dataset_key,
        "llm": backend.model_id,
        "backend": backend.describe(),
        "prompt": {"name": prompt.name, "id": prompt.id, "version": prompt.version,
                   "file": Path(prompt.source).name},
        "generation": params.as_dict(),
        "retrieval": {"max_attempts": defaults.max_attempts, "max_retries": defaults.max_retries,
                      "concurrency": defaults.concurrency,
                      "min_descriptions": defaults.parse.min_descriptions,
                      "max_descriptions": defaults.parse.max_descriptions},
        "created": utc_now(),
        **descriptor_stats(result.descriptions),
        "failures": result.failures,
        "calls": {"new": result.new_calls, "cached": result.cached_calls},
        "environment": environment_info(),
    }
    # recorded only when used, so sidecars of runs without them look as they always did
    if names:
        meta["prompt_names"] = names
    if defaults.pooling:
        meta["pooling"] = {**defaults.pooling_info(),
                           "embedder": embedder_name(embedder), "samples": result.samples}
    if out.exists():
        old_meta = load_meta(out)
        if out.read_bytes() == dumps_json(result.descriptions).encode("utf-8") and \
                set(old_meta.get("failures") or {}) == set(result.failures):
            # the same descriptions again (a replay of a committed file): leave file and sidecar as they are,
            # so replaying changes nothing in git and downstream steps see unchanged inputs
            return DescribeOutput(out, result, old_meta or meta)
        if result.failures and not set(result.failures) <= set(old_meta.get("failures") or {}):
            # a run with failed classes never replaces a file that has fewer (e.g. the API was down)
            out = out.with_name(out.stem + ".partial.json")
            print(f"{len(result.failures)} classes failed ({', '.join(list(result.failures)[:5])}): the existing "
                  f"{out.name.replace('.partial', '')} is kept; this run is written to {out.name}", flush=True)
    save_descriptors(out, result.descriptions, meta, allow_empty=bool(result.failures))
    return DescribeOutput(out, result, meta)


def fill_command(dataset: str, backend: Backend, prompt: Prompt, cache_path, params: GenerationParams,
                 defaults: RetrievalDefaults | None = None, prompt_names: bool = False, embedder: Any = None) -> str:
    """The `prolab describe` line that asks a live model exactly the calls a replay missed: same model, prompt,
    cache and generation parameters (every one of them is part of the call key), and the same prompt names and
    pooling settings (they decide which calls are made)."""
    import shlex

    from .. import defaults as kit_defaults
    from .. import offline

    args = ["prolab", "describe", "--dataset", str(dataset), "--backend", "llama_cpp"]
    if backend.model_id != offline.canonical_model_id(kit_defaults.LLM):
        args[-1] = "openai" if getattr(backend, "base_url", None) else "llama_cpp"
        args += ["--llm", backend.model_id]
    if getattr(backend, "base_url", None):
        args += ["--base_url", backend.base_url]
    in_kit = Path(prompt.source).resolve().parent == paths.prompts_dir().resolve()
    args += ["--prompt", prompt.name if in_kit else str(prompt.source)]
    if cache_path:
        args += ["--cache_path", str(cache_path)]
    base = GenerationParams()
    for flag, field in (("--llm_temperature", "temperature"), ("--max_tokens", "max_tokens"),
                        ("--repeat_penalty", "repeat_penalty"), ("--seed", "seed")):
        if getattr(params, field) != getattr(base, field):
            args += [flag, str(getattr(params, field))]
    if prompt_names:
        args += ["--prompt_names"]
    if defaults is not None and defaults.pooling:
        ref = RetrievalDefaults()
        args += ["--min_pooled", str(defaults.min_pooled)]
        for flag, field in (("--max_samples", "max_samples"), ("--dedup_threshold", "dedup_threshold"),
                            ("--pool_temperature", "pool_temperature")):
            if getattr(defaults, field) != getattr(ref, field):
                args += [flag, str(getattr(defaults, field))]
        if isinstance(embedder, str):
            args += ["--pool_embedder", embedder]
    return shlex.join(args)


def replay_settings(meta: dict[str, Any], defaults: RetrievalDefaults | None = None) -> dict[str, Any]:
    """The ``describe_dataset`` keyword arguments that reproduce a descriptor file from its sidecar: the prompt
    names it recorded and its pooling settings (and embedder name). ``{}`` for a file made without them, so
    ``describe_dataset(..., **replay_settings(meta))`` is a plain replay then."""
    from dataclasses import replace

    out: dict[str, Any] = {}
    if meta.get("prompt_names"):
        out["prompt_names"] = dict(meta["prompt_names"])
    pool = meta.get("pooling")
    if pool:
        base = defaults or RetrievalDefaults()
        parse = replace(base.parse, **{k: pool[k] for k in ("near_duplicate", "max_descriptions") if k in pool})
        out["defaults"] = replace(base, parse=parse, min_pooled=int(pool["min_pooled"]),
                                  max_samples=int(pool["max_samples"]),
                                  dedup_threshold=float(pool["dedup_threshold"]),
                                  pool_temperature=float(pool["temperature"]),
                                  pool_seed_offset=int(pool["seed_offset"]))
        if pool.get("embedder"):
            out["embedder"] = pool["embedder"]
    return out


def compare_prompts(class_names: list[str], prompts: list[str], backend: str | Backend = "replay",
                    llm: str | None = None, cache_path: str | Path | None = None,
                    params: GenerationParams = GenerationParams(),
                    defaults: RetrievalDefaults = RetrievalDefaults(), base_url: str | None = None,
                    api_key_env: str | None = None, progress: bool = True,
                    prompt_names: dict[str, str] | None = None, embedder: Any = None) -> dict[str, RetrievalResult]:
    """Describe the same classes with several prompts (same model, same cache): {prompt name: result}.
    ``prompt_names`` ({class: name to ask under}) and ``embedder`` as for ``describe_dataset``."""
    if isinstance(backend, str):
        backend = make_backend(backend, llm, base_url=base_url, api_key_env=api_key_env)
    cache = open_call_cache(cache_path)
    return {name: retrieve(class_names, backend, load_prompt(name), cache, params, defaults, progress=progress,
                           prompt_names=prompt_names, embedder=embedder if defaults.pooling else None)
            for name in prompts}


def committed_match(out: DescribeOutput) -> bool | None:
    """Whether a descriptor file written elsewhere is byte-identical to the committed one of the same name
    (None when there is no committed file, or ``out`` *is* the committed file)."""
    committed = paths.descriptor_path(out.meta["dataset"], out.meta["llm"],
                                      f"{out.meta['prompt']['name']}-{out.meta['prompt']['id']}")
    if not committed.exists() or committed.resolve() == out.path.resolve():
        return None
    return committed.read_bytes() == out.path.read_bytes()
