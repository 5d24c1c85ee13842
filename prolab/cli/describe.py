"""``prolab describe``: stage 1, descriptions from an LLM (or replayed from the call cache)."""
from __future__ import annotations

import argparse

from .. import defaults, paths
from .common import DATASET_HELP, help_text, say_dataset, subparser


def add_describe(sub: argparse._SubParsersAction) -> None:
    from ..describe.backends import GenerationParams
    from ..describe.retrieval import RetrievalDefaults

    g, r = GenerationParams(), RetrievalDefaults()
    p = subparser(sub, "describe", "stage 1: ask an LLM for descriptions of every class of a dataset")
    p.add_argument("--dataset", nargs="+", required=True, help=DATASET_HELP + "; several are allowed")
    p.add_argument("--backend", default="replay", choices=defaults.BACKENDS,
                   help=help_text("replay answers from the call cache only (offline, no model); llama_cpp runs the packaged "
                           "Qwen GGUF (`make llm`); openai any OpenAI-compatible server; transformers a local HF "
                           "model", "replay"))
    p.add_argument("--llm", default=None, help=help_text("model name, alias or path", f"the packaged {defaults.LLM}"))
    p.add_argument("--prompt", default=defaults.PROMPT,
                   help=help_text("prompt name in descriptors/prompts/ or a YAML path", defaults.PROMPT))
    p.add_argument("--base_url", default=None, help=help_text("OpenAI-compatible endpoint (openai backend)",
                                                       "$OPENAI_BASE_URL, else the OpenAI API"))
    p.add_argument("--api_key_env", default=None,
                   help=help_text("name of the environment variable holding the API key",
                           "OPENAI_API_KEY for the OpenAI API; none for a --base_url server"))
    p.add_argument("--concurrency", type=int, default=r.concurrency,
                   help=help_text("classes asked at once (capped by the backend)", r.concurrency))
    p.add_argument("--max_attempts", type=int, default=r.max_attempts,
                   help=help_text("asks per class: the first plus corrective re-asks", r.max_attempts))
    p.add_argument("--llm_temperature", type=float, default=g.temperature,
                   help=help_text("the LLM's sampling temperature (not the sigmoid temperature T of stage 3)", g.temperature))
    p.add_argument("--max_tokens", type=int, default=g.max_tokens, help=help_text("reply length cap in tokens", g.max_tokens))
    p.add_argument("--repeat_penalty", type=float, default=g.repeat_penalty,
                   help=help_text("penalty on repeated tokens (local models loop without it)", g.repeat_penalty))
    p.add_argument("--seed", type=int, default=g.seed, help=help_text("sampling seed", g.seed))
    p.add_argument("--out_root", default=None,
                   help=help_text("folder for descriptor files (then give `prolab properties` --descriptor_root)",
                           "descriptors/ for the kit's datasets, $PROLAB_CACHE/workspace/descriptors/ for yours"))
    p.add_argument("--cache_path", default=None,
                   help=help_text("call cache JSONL, read and written alone",
                           "yours ($PROLAB_CACHE/llm/calls.jsonl) over the kit's committed descriptors/cache/calls.jsonl"))
    same = "as the dataset's existing descriptor file was made (so a replay reproduces it), else "
    p.add_argument("--prompt_names", action=argparse.BooleanOptionalAction, default=None,
                   help=help_text("ask classes whose mmseg name is ambiguous or unreadable under the name in "
                           "prolab/describe/prompt_names/<dataset>.json (ADE20K tank -> 'storage tank'); descriptor "
                           "files stay keyed by the mmseg names; --no-prompt_names to turn off", same + "on (the kit's recipe for structured prompts)"))
    p.add_argument("--min_pooled", type=int, default=None,
                   help=help_text("a class whose reply gives fewer descriptions than this is asked again with seeded "
                           "sampling and its replies are pooled without duplicates, up to 15 (0: off)", same + "8 (the kit's recipe; 0 for the naive prompt)"))
    p.add_argument("--max_samples", type=int, default=None,
                   help=help_text("at most this many sampled replies per class when pooling", same + str(r.max_samples)))
    p.add_argument("--dedup_threshold", type=float, default=None,
                   help=help_text("cosine at or above which two pooled descriptions count as one (with --pool_embedder)",
                           same + str(r.dedup_threshold)))
    p.add_argument("--pool_temperature", type=float, default=None,
                   help=help_text("LLM sampling temperature of the pooled samples", same + str(r.pool_temperature)))
    p.add_argument("--pool_embedder", default=None,
                   help=help_text("sentence embedder for near-duplicate removal when pooling, e.g. all-MiniLM-L6-v2",
                           same + "all-MiniLM-L6-v2 (the kit's recipe)"))
    p.set_defaults(func=run_describe)


def run_describe(a: argparse.Namespace) -> int:
    from ..describe import GenerationParams, describe_dataset, make_backend
    from ..describe.prompts import load_prompt
    from ..validation import validate

    validate("describe", vars(a), skip_none=True)  # every flag before the model loads
    params = GenerationParams(temperature=a.llm_temperature, max_tokens=a.max_tokens, repeat_penalty=a.repeat_penalty,
                              seed=a.seed)
    backend = make_backend(a.backend, a.llm, base_url=a.base_url, api_key_env=a.api_key_env)  # shared by all datasets
    tag = load_prompt(a.prompt).tag
    failed = 0
    for ds in a.dataset:
        say_dataset(ds)
        defaults, prompt_names, embedder = describe_settings(a, ds, backend.model_id, tag)
        out = describe_dataset(ds, backend=backend, prompt=a.prompt, out_root=a.out_root,
                               cache_path=a.cache_path, params=params, defaults=defaults,
                               prompt_names=prompt_names, embedder=embedder)
        print(f"{ds}: {out.result.summary()}\n  -> {out.path}", flush=True)
        failed += len(out.result.failures)
    return 0 if failed == 0 else 3


def describe_settings(a: argparse.Namespace, ds: str, llm_id: str, prompt_tag: str):
    """(RetrievalDefaults, prompt_names, embedder) of one dataset's describe run: the flags given, and for the
    prompt-name and pooling flags left out, the settings the dataset's existing descriptor file records (so
    `prolab describe --dataset X` replays a committed file byte for byte and never rewrites it with other
    settings), else off."""
    from dataclasses import replace

    from ..datasets import dataset_key
    from ..describe import RetrievalDefaults, load_meta, replay_settings

    target = paths.descriptor_path(dataset_key(ds), llm_id, prompt_tag,
                                   root=paths.resolve(a.out_root) if a.out_root else None)
    rec = replay_settings(load_meta(target)) if target.exists() else {}
    # a dataset described for the first time gets the kit's recipe (structured prompts), as the committed files did
    from ..describe.prompts import load_prompt
    from ..describe.retrieval import KIT_RECIPE

    first = not target.exists() and load_prompt(a.prompt).reply_format == "bullets"
    if first:
        rec = {"defaults": replace(RetrievalDefaults(), min_pooled=KIT_RECIPE["min_pooled"],
                                   max_samples=KIT_RECIPE["max_samples"]),
               "prompt_names": KIT_RECIPE["prompt_names"], "embedder": KIT_RECIPE["pool_embedder"]}
    base = rec.get("defaults") or RetrievalDefaults()
    keys = ("min_pooled", "max_samples", "dedup_threshold", "pool_temperature")
    taken = [k for k in keys if getattr(a, k) is None and rec.get("defaults") is not None]
    defaults = replace(base, concurrency=a.concurrency, max_attempts=a.max_attempts,
                       **{k: getattr(a, k) for k in keys if getattr(a, k) is not None})
    prompt_names = a.prompt_names if a.prompt_names is not None else rec.get("prompt_names", False)
    embedder = a.pool_embedder if a.pool_embedder is not None else rec.get("embedder")
    if a.prompt_names is None and rec.get("prompt_names"):
        taken.append("prompt_names")
    if a.pool_embedder is None and rec.get("embedder"):
        taken.append("pool_embedder")
    if taken and first:
        print(f"  {', '.join(taken)}: the kit's recipe for a first description (min_pooled {defaults.min_pooled}, "
              f"prompt names {'on' if prompt_names else 'off'}, de-duplicated with {embedder}), as the committed "
              "files were made; give the flags to change them (--min_pooled 0: one reply per class)", flush=True)
    elif taken:
        print(f"  {', '.join(taken)}: as {target.name} was made (min_pooled {defaults.min_pooled}, prompt names "
              f"{'on' if prompt_names else 'off'}); give the flags to change them", flush=True)
    return defaults, prompt_names, embedder

