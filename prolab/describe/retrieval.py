"""The retrieval engine: ask an LLM about every class, robustly, resumably, with a bounded number of calls.

For each class: render the prompt, answer from the call cache or the backend (retrying transient errors with
exponential back-off), parse and check the reply, and re-ask with a corrective follow-up a bounded number of
times. A class that never yields a usable reply is reported as failed; the run goes on.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Callable

from ..progress import tqdm

from .backends import Backend, GenerationParams, ReplayMissError, TransientError
from .cache import CallCache, call_key
from ..validation import validate
from .parsing import ParseDefaults, ParsedReply, parse_reply, reask_message, sanitize_reply
from .prompts import Prompt


@dataclass(frozen=True)
class RetrievalDefaults:
    concurrency: int = 1          # classes in flight at once (capped by the backend's own limit)
    max_attempts: int = 3         # asks per class: the first plus up to two corrective re-asks
    max_retries: int = 6          # transient-error retries per call
    backoff_base: float = 1.0     # seconds before the first retry; doubles each time
    backoff_max: float = 60.0     # cap of one pause
    reask_temperature: float = 0.7  # at temperature 0 a re-ask tends to get the same reply back: sample instead
    parse: ParseDefaults = field(default_factory=ParseDefaults)

    def __post_init__(self):
        validate("describe", {"concurrency": self.concurrency, "max_attempts": self.max_attempts})
        if self.max_retries < 0:
            raise ValueError(f"max_retries = {self.max_retries}: must be >= 0")


@dataclass
class ClassResult:
    class_name: str
    descriptions: list[str]
    problem: str | None = None    # None if the class succeeded
    attempts: int = 0
    new_calls: int = 0
    cached_calls: int = 0

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

    def summary(self) -> str:
        n = len(self.classes)
        lines = [f"{n - len(self.failures)}/{n} classes described; {self.new_calls} new calls, "
                 f"{self.cached_calls} answered from the cache"]
        for name, problem in self.failures.items():
            lines.append(f"  FAILED {name!r}: {problem}")
        return "\n".join(lines)


class Retriever:
    def __init__(self, backend: Backend, prompt: Prompt, cache: CallCache,
                 params: GenerationParams = GenerationParams(), defaults: RetrievalDefaults = RetrievalDefaults(),
                 sleep: Callable[[float], None] = time.sleep):
        self.backend, self.prompt, self.cache = backend, prompt, cache
        self.params, self.defaults = params, defaults
        self._sleep = sleep
        self._rng = random.Random(params.seed)
        self._rng_lock = threading.Lock()

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

    def call(self, messages: list[dict[str, str]], class_name: str, attempt: int) -> tuple[str, bool, int]:
        """(reply, was_cached, reply length before any cut) for one rendered conversation. Every reply, new or cached, goes through
        ``sanitize_reply``; one longer than ``parse.max_reply_chars`` is stored cut short (and marked), so a
        runaway server cannot fill the cache, and it stays a bad reply when replayed."""
        params = self.params_for(attempt)
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
                err = ReplayMissError(
                    f"replay: no cached reply for class {class_name!r} with prompt {self.prompt.tag} "
                    f"(model {self.backend.model_id}, attempt {attempt + 1}) in {self.cache.path}. "
                    "Generate it first with a live backend (e.g. --backend llama_cpp).")
                err.missing = [class_name]
                raise err from None
            except TransientError as e:
                if retry == self.defaults.max_retries:
                    raise
                self._sleep(self._backoff(retry, e.retry_after))
        clean = sanitize_reply(reply)
        info = {"sanitized": True} if clean != reply else {}
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
        class_name = query or class_name
        messages = self.prompt.render(class_name)
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

    # -- all classes -----------------------------------------------------------------------------------------
    def run(self, class_names: list[str], progress: bool = True, desc: str = "describing") -> RetrievalResult:
        """Every class; a replay miss does not stop the others: all missing classes are listed at the end."""
        workers = max(1, min(self.defaults.concurrency, self.backend.max_concurrency, len(class_names) or 1))
        queries = self.query_names(class_names)
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
            err = ReplayMissError(
                f"replay: no cached replies for {len(missing)} of {len(class_names)} classes with prompt "
                f"{self.prompt.tag} (model {self.backend.model_id}) in {self.cache.path}: "
                f"{', '.join(map(repr, missing))}. Generate them with a live backend (e.g. --backend llama_cpp); "
                "the classes already in the cache are not asked again")
            err.missing = missing
            raise err
        return RetrievalResult([results[name] for name in class_names])


def retrieve(class_names: list[str], backend: Backend, prompt: Prompt, cache: CallCache,
             params: GenerationParams = GenerationParams(), defaults: RetrievalDefaults = RetrievalDefaults(),
             progress: bool = True) -> RetrievalResult:
    """Describe every class; see ``Retriever``. Raises ``BackendError``/``ReplayMissError`` only for problems
    that would hit every class (bad key, unknown model, cache miss under replay)."""
    return Retriever(backend, prompt, cache, params, defaults).run(class_names, progress=progress)

