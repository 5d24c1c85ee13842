"""The retrieval engine: ask an LLM about every class, robustly, resumably, with a bounded number of calls.

For each class: render the prompt, answer from the call cache or the backend (retrying transient errors with
exponential back-off), parse and check the reply, and re-ask with a corrective follow-up a bounded number of
times. A class that never yields a usable reply is reported as failed; the run goes on.

Opt-in extras (defaults keep one conversation per class): a class can be asked under a *prompt name* (``run(...,
prompt_names=...)``, e.g. ``tank`` asked as "storage tank", reported as ``tank``), and a class whose reply gives
fewer than ``RetrievalDefaults.min_pooled`` descriptions can be asked again with sampling and the descriptions of
all its replies pooled (``pooled replies``, below). Every extra call is seeded and cached like a re-ask, so a
replay reproduces the result exactly.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from typing import Any, Callable

from ..progress import tqdm

from .backends import Backend, GenerationParams, ReplayMissError, TransientError
from .cache import CallCache, call_key
from ..validation import validate
from .parsing import ParseDefaults, ParsedReply, parse_reply, reask_message, sanitize_reply
from .prompts import Prompt, norm_text


# The kit's description recipe for structured (bullet-list) prompts: every committed structured descriptor file was
# made with it (descriptors/generate.sh), and `prolab describe` / notebook 02 use it for a dataset described for the
# first time: prompt names where the dataset has them, replies pooled to at least 8 descriptions per class from up
# to 4 seeded samples, near-duplicates dropped by MiniLM cosine.
KIT_RECIPE = {"prompt_names": True, "min_pooled": 8, "max_samples": 4, "pool_embedder": "all-MiniLM-L6-v2"}


@dataclass(frozen=True)
class RetrievalDefaults:
    concurrency: int = 1          # classes in flight at once (capped by the backend's own limit)
    max_attempts: int = 3         # asks per class: the first plus up to two corrective re-asks
    max_retries: int = 6          # transient-error retries per call
    backoff_base: float = 1.0     # seconds before the first retry; doubles each time
    backoff_max: float = 60.0     # cap of one pause
    reask_temperature: float = 0.7  # at temperature 0 a re-ask tends to get the same reply back: sample instead
    parse: ParseDefaults = field(default_factory=ParseDefaults)
    # -- pooled replies (opt-in; min_pooled = 0 keeps one conversation per class) ---------------------------------
    # A class whose reply gives fewer than `min_pooled` descriptions is asked the same first question again with
    # sampling (temperature `pool_temperature`, seed params.seed + pool_seed_offset + i for sample i = 1, 2, ...,
    # at most `max_samples` times); the descriptions of all its replies are pooled in order, duplicates dropped,
    # until it has `min_pooled` (all of the reply that gets it there are kept, up to `parse.max_descriptions`).
    # Duplicates: the same text up to case and punctuation, a SequenceMatcher ratio >= `parse.near_duplicate` (the
    # rule inside one reply), and, when the Retriever has an embedder, a cosine >= `dedup_threshold`.
    min_pooled: int = 0
    max_samples: int = 4
    dedup_threshold: float = 0.9
    pool_temperature: float = 0.7
    pool_seed_offset: int = 100       # above any re-ask's seed offset (max_attempts <= 20)

    def __post_init__(self):
        validate("describe", {"concurrency": self.concurrency, "max_attempts": self.max_attempts})
        if self.max_retries < 0:
            raise ValueError(f"max_retries = {self.max_retries}: must be >= 0")
        if not isinstance(self.min_pooled, int) or not 0 <= self.min_pooled <= self.parse.max_descriptions:
            raise ValueError(f"min_pooled = {self.min_pooled!r}: must be an integer from 0 (off) to "
                             f"parse.max_descriptions = {self.parse.max_descriptions}")
        if not isinstance(self.max_samples, int) or not 1 <= self.max_samples <= 50:
            raise ValueError(f"max_samples = {self.max_samples!r}: must be an integer from 1 to 50")
        if not 0 < self.dedup_threshold <= 1:
            raise ValueError(f"dedup_threshold = {self.dedup_threshold!r}: must be in (0, 1]")
        if not 0 < self.pool_temperature <= 2:
            raise ValueError(f"pool_temperature = {self.pool_temperature!r}: must be in (0, 2] (at temperature 0 "
                             "every sample would repeat the first reply)")
        if not isinstance(self.pool_seed_offset, int) or self.pool_seed_offset < self.max_attempts:
            raise ValueError(f"pool_seed_offset = {self.pool_seed_offset!r}: must be an integer >= max_attempts")

    @property
    def pooling(self) -> bool:
        return self.min_pooled > 0

    def pooling_info(self) -> dict[str, Any]:
        """The pooling settings, as recorded in a sidecar."""
        return {"min_pooled": self.min_pooled, "max_samples": self.max_samples,
                "dedup_threshold": self.dedup_threshold, "temperature": self.pool_temperature,
                "seed_offset": self.pool_seed_offset, "near_duplicate": self.parse.near_duplicate,
                "max_descriptions": self.parse.max_descriptions}


@dataclass
class ClassResult:
    class_name: str
    descriptions: list[str]
    problem: str | None = None    # None if the class succeeded
    attempts: int = 0
    new_calls: int = 0
    cached_calls: int = 0
    samples: int = 0              # sampled replies asked for pooling (0 unless RetrievalDefaults.min_pooled > 0)
    query: str | None = None      # the name put to the LLM, when it differs from class_name (a prompt name)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class RetrievalResult:
    classes: list[ClassResult]

    @property
    def descriptions(self) -> dict[str, list[str]]:
        return {r.class_name: r.descriptions for r in self.classes}

    @property
    def failures(self) -> dict[str, str]:
        return {r.class_name: r.problem for r in self.classes if r.problem is not None}

    @property
    def new_calls(self) -> int:
        return sum(r.new_calls for r in self.classes)

    @property
    def cached_calls(self) -> int:
        return sum(r.cached_calls for r in self.classes)

    @property
    def samples(self) -> dict[str, int]:
        """{class: sampled replies pooled} for the classes that were sampled."""
        return {r.class_name: r.samples for r in self.classes if r.samples}

    @property
    def queries(self) -> dict[str, str]:
        """{class: the name it was asked under} for the classes asked under another name."""
        return {r.class_name: r.query for r in self.classes if r.query and r.query != r.class_name}

    def summary(self) -> str:
        n = len(self.classes)
        lines = [f"{n - len(self.failures)}/{n} classes described; {self.new_calls} new calls, "
                 f"{self.cached_calls} answered from the cache"]
        if self.samples:
            lines.append(f"  {sum(self.samples.values())} sampled replies pooled for {len(self.samples)} classes")
        for name, problem in self.failures.items():
            lines.append(f"  FAILED {name!r}: {problem}")
        return "\n".join(lines)


def embedder_name(embedder: Any) -> str | None:
    """How an embedder is named in a sidecar: the name it was given, the model of a sentence-transformers
    Embedder (a name ``make_embedder`` takes back), another Embedder's ``embedder_id``, or a function's name."""
    if embedder is None:
        return None
    if isinstance(embedder, str):
        return embedder
    if getattr(embedder, "kind", None) == "st" and getattr(embedder, "model_id", None):
        return str(embedder.model_id)
    return str(getattr(embedder, "embedder_id", None) or getattr(embedder, "__name__", None)
               or type(embedder).__name__)


class Retriever:
    """``embedder`` (only used for pooled replies): a callable ``list[str] -> array (n, d)``, an object with
    ``encode(texts)`` (``prolab.embed.make_embedder(...)``), or a model name for ``make_embedder``, built
    on first use, so a run that pools nothing never loads it."""

    def __init__(self, backend: Backend, prompt: Prompt, cache: CallCache,
                 params: GenerationParams = GenerationParams(), defaults: RetrievalDefaults = RetrievalDefaults(),
                 sleep: Callable[[float], None] = time.sleep, embedder: Any = None):
        self.backend, self.prompt, self.cache = backend, prompt, cache
        self.params, self.defaults = params, defaults
        self._sleep = sleep
        self._rng = random.Random(params.seed)
        self._rng_lock = threading.Lock()
        self.embedder = embedder
        self._embed_fn: Callable[[list[str]], Any] | None = None
        self._vectors: dict[str, Any] = {}
        self._embed_lock = threading.Lock()

    # -- one call --------------------------------------------------------------------------------------------
    def _backoff(self, retry: int, hint: float | None) -> float:
        d = self.defaults
        with self._rng_lock:
            jitter = 0.5 + 0.5 * self._rng.random()
        delay = min(d.backoff_max, d.backoff_base * 2 ** retry) * jitter
        return max(delay, min(hint or 0.0, 600.0))  # the server's Retry-After wins (up to 10 min)

    def params_for(self, attempt: int) -> GenerationParams:
        """First ask: the configured parameters. Re-asks: sampling, with a seed per attempt (still replayable)."""
        if attempt == 0:
            return self.params
        return replace(self.params, temperature=max(self.params.temperature, self.defaults.reask_temperature),
                       seed=self.params.seed + attempt)

    def params_for_sample(self, sample: int) -> GenerationParams:
        """Pooled sample ``sample`` (1, 2, ...): sampling, with a seed of its own (still replayable)."""
        d = self.defaults
        return replace(self.params, temperature=max(self.params.temperature, d.pool_temperature),
                       seed=self.params.seed + d.pool_seed_offset + sample)

    def call(self, messages: list[dict[str, str]], class_name: str, attempt: int,
             sample: int = 0) -> tuple[str, bool, int]:
        """(reply, was_cached, reply length before any cut) for one rendered conversation. Every reply, new or cached, goes through
        ``sanitize_reply``; one longer than ``parse.max_reply_chars`` is stored cut short (and marked), so a
        runaway server cannot fill the cache, and it stays a bad reply when replayed. ``sample`` > 0: a pooled
        sample of the first question (``params_for_sample``)."""
        params = self.params_for_sample(sample) if sample else self.params_for(attempt)
        key = call_key(self.backend.model_id, messages, params.as_dict(), self.backend.cache_scope())
        hit = self.cache.get(key)
        if hit is not None:
            reply = sanitize_reply(hit["reply"])
            n = hit.get("reply_chars")
            return reply, True, max(n, len(reply)) if isinstance(n, int) else len(reply)
        for retry in range(self.defaults.max_retries + 1):
            try:
                reply = self.backend.complete(messages, params)
                break
            except ReplayMissError:
                which = f"pooled sample {sample}" if sample else f"attempt {attempt + 1}"
                err = ReplayMissError(
                    f"replay: no cached reply for class {class_name!r} with prompt {self.prompt.tag} "
                    f"(model {self.backend.model_id}, {which}) in {self.cache.path}. "
                    "Generate it first with a live backend (e.g. --backend llama_cpp).")
                err.missing = [class_name]
                raise err from None
            except TransientError as e:
                if retry == self.defaults.max_retries:
                    raise
                self._sleep(self._backoff(retry, e.retry_after))
        clean = sanitize_reply(reply)
        info = {"sanitized": True} if clean != reply else {}
        if sample:
            info["sample"] = sample
        limit = self.defaults.parse.max_reply_chars
        if len(clean) > limit:
            info["reply_chars"] = len(clean)
        self.cache.put(key, clean[:limit], model=self.backend.model_id, prompt=self.prompt.tag,
                       class_name=class_name, attempt=attempt + 1, params=params.as_dict(), **info)
        return clean[:limit], False, len(clean)

    # -- one class -------------------------------------------------------------------------------------------
    def query_names(self, class_names: list[str]) -> dict[str, str]:
        """The spelling each class is asked under: the class's own, unless the cache already holds calls for
        the same class spelt differently (``Sky`` vs ``sky``, ``traffic_light`` vs ``traffic light``), in
        which case that spelling, so its replies are reused exactly (same request, same key)."""
        from ..datasets import class_key

        spellings: dict[str, set[str]] = {}
        for rec in self.cache.records():
            if rec.get("model") == self.backend.model_id and rec.get("prompt") == self.prompt.tag and \
                    isinstance(rec.get("class_name"), str) and rec.get("attempt", 1) == 1:
                spellings.setdefault(class_key(rec["class_name"]), set()).add(rec["class_name"])
        exact = set().union(*spellings.values()) if spellings else set()
        # a class asked before under its own spelling keeps it; otherwise the first of the others, in sorted
        # order (not file order), so the choice never depends on which line was appended first
        return {c: c if c in exact else min(spellings.get(class_key(c), {c})) for c in class_names}

    def describe_class(self, class_name: str, query: str | None = None) -> ClassResult:
        """Describe one class; ``query`` is the spelling put to the LLM (default: ``class_name``)."""
        res = ClassResult(class_name, [])
        if query and query != class_name:
            res.query = query
        class_name = query or class_name
        messages = self.prompt.render(class_name)
        res = self._ask(res, class_name, messages)
        if self.defaults.pooling and len(res.descriptions) < self.defaults.min_pooled and \
                not (res.problem or "").startswith("backend kept failing"):
            self._pool(res, class_name, messages)
        return res

    def _ask(self, res: ClassResult, class_name: str, messages: list[dict[str, str]]) -> ClassResult:
        """The first question and up to ``max_attempts - 1`` corrective re-asks (the engine's behaviour without
        pooling)."""
        best: list[str] = []
        for attempt in range(self.defaults.max_attempts):
            try:
                reply, cached, n_chars = self.call(messages, class_name, attempt)
            except TransientError as e:
                res.problem = f"backend kept failing: {e}"
                break
            res.attempts += 1
            res.cached_calls += cached
            res.new_calls += not cached
            if n_chars > self.defaults.parse.max_reply_chars:  # a runaway reply: ask again, keep nothing of it
                parsed = ParsedReply([], f"reply too long ({n_chars} characters)")
            else:
                parsed = parse_reply(reply, class_name, self.prompt, self.defaults.parse)
            if len(parsed.descriptions) > len(best):
                best = parsed.descriptions
            if parsed.problem is None:
                res.descriptions, res.problem = parsed.descriptions, None
                return res
            res.problem = parsed.problem
            messages = messages + [
                # a runaway reply goes back cut short: the re-ask must stay a normal-sized request
                {"role": "assistant", "content": reply if n_chars <= self.defaults.parse.max_reply_chars
                 else reply[:1000]},
                {"role": "user", "content": reask_message(class_name, parsed.problem, self.prompt,
                                                          self.defaults.parse)},
            ]
        res.descriptions = best
        if res.problem is None:  # no attempt was made at all
            res.problem = "no reply"
        res.problem = f"{res.problem} after {res.attempts} attempts" if res.attempts else res.problem
        return res

    # -- pooled replies --------------------------------------------------------------------------------------
    def _embed(self, texts: list[str]):
        """Unit vectors for ``texts`` (memoised per text), or None without an embedder."""
        if self.embedder is None:
            return None
        import numpy as np

        with self._embed_lock:
            if self._embed_fn is None:
                emb = self.embedder
                if isinstance(emb, str):
                    from ..embed import make_embedder  # only now: pooling with an embedder needs it

                    emb = self.embedder = make_embedder(emb)
                self._embed_fn = emb.encode if hasattr(emb, "encode") else emb
            todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
            if todo:
                v = np.asarray(self._embed_fn(todo), dtype=np.float64)
                if v.ndim != 2 or len(v) != len(todo):
                    raise ValueError(f"the embedder returned shape {v.shape} for {len(todo)} texts; "
                                     "expected (n_texts, dim)")
                v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
                for t, row in zip(todo, v):
                    self._vectors[t] = row
            return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0))

    def _is_duplicate(self, text: str, kept: list[str], kept_keys: list[str]) -> bool:
        d = self.defaults
        key = norm_text(text)
        if not key or key in kept_keys:
            return True
        if any(SequenceMatcher(None, key, k).ratio() >= d.parse.near_duplicate for k in kept_keys):
            return True
        if self.embedder is not None and kept:
            vecs = self._embed(kept + [text])
            # rounded: float noise between machines must not flip a decision that a replay repeats
            if round(float((vecs[:-1] @ vecs[-1]).max()), 4) >= d.dedup_threshold:
                return True
        return False

    def _pool(self, res: ClassResult, class_name: str, messages: list[dict[str, str]]) -> None:
        """Ask the first question again with sampling until the class has ``min_pooled`` descriptions (see
        ``RetrievalDefaults``). A class that had failed counts as described once the pool reaches
        ``parse.min_descriptions``."""
        d = self.defaults
        cap = d.parse.max_descriptions
        pool = list(res.descriptions)[:cap]
        keys = [norm_text(t) for t in pool]
        for i in range(1, d.max_samples + 1):
            try:
                reply, cached, n_chars = self.call(messages, class_name, 0, sample=i)
            except TransientError as e:
                res.problem = f"backend kept failing while pooling (sample {i}): {e}"
                break
            res.samples += 1
            res.cached_calls += cached
            res.new_calls += not cached
            if n_chars > d.parse.max_reply_chars:
                continue
            descs = parse_reply(reply, class_name, self.prompt, d.parse).descriptions
            if self.embedder is not None and descs:
                self._embed(pool + descs)  # one embedder call per reply; the checks below reuse the vectors
            for text in descs:
                if len(pool) >= cap:
                    break
                if not self._is_duplicate(text, pool, keys):
                    pool.append(text)
                    keys.append(norm_text(text))
            if len(pool) >= d.min_pooled:
                break
        res.descriptions = pool
        if res.problem is not None and not res.problem.startswith("backend kept failing") and \
                len(pool) >= d.parse.min_descriptions:
            res.problem = None

    # -- all classes -----------------------------------------------------------------------------------------
    def run(self, class_names: list[str], progress: bool = True, desc: str = "describing",
            prompt_names: dict[str, str] | None = None) -> RetrievalResult:
        """Every class; a replay miss does not stop the others: all missing classes are listed at the end.
        ``prompt_names``: ``{class: name to ask under}`` for some classes (see ``senses``); results stay keyed
        by the class name."""
        workers = max(1, min(self.defaults.concurrency, self.backend.max_concurrency, len(class_names) or 1))
        queries = self.query_names(class_names)
        for c in class_names:
            if prompt_names and prompt_names.get(c):
                queries[c] = prompt_names[c]
        results: dict[str, ClassResult | None] = {}

        def one(name: str) -> ClassResult | None:
            try:
                return self.describe_class(name, queries[name])
            except ReplayMissError:
                return None  # a replay miss: listed with all the others at the end

        bar = tqdm(total=len(class_names), desc=desc, unit="class", disable=not progress)
        try:
            if workers == 1:
                for name in class_names:
                    results[name] = one(name)
                    bar.update()
                    bar.set_postfix_str(name[:20])
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    futures = {pool.submit(one, name): name for name in class_names}
                    try:
                        for fut in as_completed(futures):
                            results[futures[fut]] = fut.result()
                            bar.update()
                    except BaseException:
                        for f in futures:
                            f.cancel()
                        raise
        finally:
            bar.close()
        missing = [c for c in class_names if results.get(c) is None]
        if missing:
            listed = [f"{c!r} (asked as {queries[c]!r})" if prompt_names and prompt_names.get(c) else repr(c)
                      for c in missing]
            err = ReplayMissError(
                f"replay: no cached replies for {len(missing)} of {len(class_names)} classes with prompt "
                f"{self.prompt.tag} (model {self.backend.model_id}) in {self.cache.path}: "
                f"{', '.join(listed)}. Generate them with a live backend (e.g. --backend llama_cpp); "
                "the classes already in the cache are not asked again")
            err.missing = missing
            raise err
        return RetrievalResult([results[name] for name in class_names])


def retrieve(class_names: list[str], backend: Backend, prompt: Prompt, cache: CallCache,
             params: GenerationParams = GenerationParams(), defaults: RetrievalDefaults = RetrievalDefaults(),
             progress: bool = True, prompt_names: dict[str, str] | None = None,
             embedder: Any = None) -> RetrievalResult:
    """Describe every class; see ``Retriever``. Raises ``BackendError``/``ReplayMissError`` only for problems
    that would hit every class (bad key, unknown model, cache miss under replay)."""
    return Retriever(backend, prompt, cache, params, defaults, embedder=embedder).run(
        class_names, progress=progress, prompt_names=prompt_names)

