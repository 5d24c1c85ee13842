"""LLM backends behind one interface: ``backend.complete(messages, params) -> str``.

- ``openai``: any OpenAI-compatible chat API through the openai v1 client (OpenAI, vLLM, llama.cpp server);
  the key comes only from an environment variable and is never stored.
- ``llama_cpp``: a local GGUF through llama-cpp-python (offline default: Qwen2.5-Coder-1.5B-Instruct).
- ``transformers``: a local Hugging Face chat model by name or path (Llama-2-7B-chat and the like, on a GPU).
- ``replay``: answers only from the call cache; a miss is an error.

Retries, caching and concurrency live in the retrieval engine, not here: a backend makes exactly one attempt
and raises ``TransientError`` for what is worth retrying (rate limits, 5xx, time-outs, dropped connections).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from .. import defaults
from ..redact import redact

OPENAI_API_URL = "https://api.openai.com/v1"


class BackendError(RuntimeError):
    """A failure that retrying will not fix (bad model name, authentication, malformed request).
    The message is redacted on construction: servers echo keys back in their errors."""

    def __init__(self, message: str):
        super().__init__(redact(message))


class TransientError(RuntimeError):
    """A failure worth retrying after a pause. ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(redact(message))
        self.retry_after = retry_after


class ReplayMissError(LookupError):
    """The replay backend was asked for a call that is not in the cache."""


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings; part of every cache key. Defaults are the kit's offline setting (docs/stages/describe.md)."""
    # the LLM's sampling temperature: `llm_temperature` in the CLI and notebooks, so it is never confused with
    # the sigmoid's T; the field keeps the API's own name because it is part of every committed cache key
    temperature: float = 0.0     # the release used temperature 0
    max_tokens: int = 200        # 6-10 short bullets fit; bounds the cost of a runaway loop
    repeat_penalty: float = 1.15  # without it small local models loop at temperature 0
    seed: int = 0

    def __post_init__(self):
        from ..validation import validate

        validate("describe", {"llm_temperature": self.temperature, "max_tokens": self.max_tokens,
                              "repeat_penalty": self.repeat_penalty, "seed": self.seed})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend:
    kind: str = "base"
    model_id: str = ""
    max_concurrency: int = 1     # calls the backend can serve at once (1 for in-process models)

    def complete(self, messages: list[dict[str, str]], params: GenerationParams) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What goes into metadata sidecars (never a secret)."""
        return {"backend": self.kind, "model_id": self.model_id}

    def cache_scope(self) -> dict[str, Any]:
        """What besides the model id and the request decides a reply (part of the cache key when not empty)."""
        return {}


# --- OpenAI-compatible HTTP APIs ---------------------------------------------------------------------------

class OpenAIBackend(Backend):
    kind = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = None,
                 timeout: float = 60.0, repeat_penalty_field: str | None = "auto", model_id: str | None = None):
        try:
            import openai
        except ImportError as e:  # pragma: no cover - openai is a core dependency
            raise BackendError("the openai backend needs `pip install openai>=1`") from e
        self._openai = openai
        # The endpoint that will really be called: the flag, else OPENAI_BASE_URL (which the openai client
        # would read by itself), else the OpenAI API. Which key may be sent is decided for *that* endpoint.
        base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/") or None
        official = base_url is None or urlsplit(base_url).hostname == "api.openai.com"
        # OPENAI_API_KEY is only ever sent to the OpenAI API itself; another server gets a key only from a
        # variable named explicitly, so a real key never reaches a third-party base_url by accident.
        env = api_key_env or ("OPENAI_API_KEY" if official else None)
        key = os.environ.get(env) if env else None
        if not key:
            if env:
                raise BackendError(f"no API key: the environment variable {env} is not set")
            key = "not-needed"  # local servers (llama.cpp, vLLM without auth) accept any key
        self._key = key
        self.model = model
        self.model_id = model_id or model
        self.base_url = base_url or OPENAI_API_URL
        self.max_concurrency = 64
        # OpenAI itself rejects unknown fields; llama.cpp's server reads "repeat_penalty", vLLM "repetition_penalty".
        if repeat_penalty_field == "auto":
            repeat_penalty_field = None if official else "repeat_penalty"
        self.repeat_penalty_field = repeat_penalty_field
        # max_retries=0: the engine owns retries so they are uniform across backends and visible in tests.
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=timeout, max_retries=0)

    def complete(self, messages, params):
        openai = self._openai
        extra = {}
        if self.repeat_penalty_field and params.repeat_penalty != 1.0:
            extra[self.repeat_penalty_field] = params.repeat_penalty
        where = _redact_url(self.base_url)
        try:
            # the raw body, decoded here: invalid UTF-8 in a reply must not crash the openai client's decoder
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, temperature=params.temperature,
                max_tokens=params.max_tokens, seed=params.seed, extra_body=extra or None)
            body = raw.http_response.content
        except openai.RateLimitError as e:
            raise TransientError(self._clean(f"rate limited (429): {e}"), _retry_after(e)) from None
        except openai.APIStatusError as e:
            if e.status_code >= 500 or e.status_code in (408, 409):
                raise TransientError(self._clean(f"server error {e.status_code}: {e}"), _retry_after(e)) from None
            raise BackendError(self._clean(f"{where} refused the request ({e.status_code}): {e}")) from None
        except openai.APITimeoutError:
            raise TransientError("request timed out") from None
        except openai.APIConnectionError as e:
            raise TransientError(self._clean(f"connection failed: {e}")) from None
        try:
            # bad bytes survive as lone surrogates; the engine's one sanitising path replaces and records them
            data = json.loads(body.decode("utf-8", errors="surrogateescape"))
            choices = data.get("choices") or []
            content = choices[0]["message"].get("content") if choices else None
        except (ValueError, AttributeError, KeyError, IndexError, TypeError) as e:
            raise TransientError(f"{where} sent a reply that is not a chat completion ({type(e).__name__})") from None
        if not choices:
            raise TransientError("reply without choices")
        # a server that echoes credentials inside a reply must not put them in the cache or a descriptor file
        return self._clean(content) if isinstance(content, str) else ""

    def _clean(self, text: str) -> str:
        return redact(text, self._key)

    def describe(self):
        return {**super().describe(), "model": self.model, "base_url": _redact_url(self.base_url)}

    def cache_scope(self):
        # the same model name on two servers is two models (OpenAI's gpt-4o vs a local alias)
        return {} if self.base_url == OPENAI_API_URL else {"base_url": _redact_url(self.base_url)}


def _retry_after(err: Any) -> float | None:
    try:
        value = err.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _redact_url(url: str | None) -> str | None:
    """Drop user:password@ from a URL before it is written anywhere."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- llama.cpp in process ----------------------------------------------------------------------------------

class LlamaCppBackend(Backend):
    kind = "llama_cpp"

    def __init__(self, model: str = defaults.LLM, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0, verbose: bool = False):
        from .. import offline

        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise BackendError("the llama_cpp backend needs llama-cpp-python: `make llm` (or pip install "
                               "'prolab[llm]' with the build flags of docs/install.md)") from e
        path, self.model_id = offline.resolve_gguf(model)
        self.model_path = str(path)
        self._lock = threading.Lock()  # a Llama object serves one call at a time
        self.llm = Llama(model_path=self.model_path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                         seed=seed, verbose=verbose)

    def complete(self, messages, params):
        with self._lock:
            out = self.llm.create_chat_completion(
                messages=messages, temperature=params.temperature, max_tokens=params.max_tokens,
                repeat_penalty=params.repeat_penalty, seed=params.seed)
        return out["choices"][0]["message"]["content"] or ""


# --- Hugging Face transformers -----------------------------------------------------------------------------

class TransformersBackend(Backend):
    kind = "transformers"

    def __init__(self, model: str, device: str | None = None, dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_id = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()
        except OSError as e:
            raise BackendError(f"cannot load transformers model {model!r} (no local copy and no hub access?): "
                               f"{e}. Offline, use --backend llama_cpp with the packaged Qwen GGUF.") from None
        if self.tokenizer.chat_template is None:
            raise BackendError(f"model {model!r} has no chat template; use a chat/instruct model")
        self._lock = threading.Lock()

    def complete(self, messages, params):
        import torch

        with self._lock:
            torch.manual_seed(params.seed)
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True).to(self.device)
            sample = params.temperature > 0
            out = self.model.generate(**ids, max_new_tokens=params.max_tokens, do_sample=sample,
                                      temperature=params.temperature if sample else None, top_p=None, top_k=None,
                                      repetition_penalty=params.repeat_penalty,
                                      pad_token_id=self.tokenizer.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True)


# --- replay ------------------------------------------------------------------------------------------------

class ReplayBackend(Backend):
    """Serves nothing itself: the engine answers from the cache and turns a miss into a ReplayMissError."""
    kind = "replay"

    def __init__(self, model: str = defaults.LLM, base_url: str | None = None):
        from .. import offline

        self.model_id = offline.canonical_model_id(model)
        self.max_concurrency = 64
        # replays the calls that were made against this OpenAI-compatible server (resolved like the openai
        # backend's endpoint: the flag, else OPENAI_BASE_URL)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/") or None

    def cache_scope(self):
        return {"base_url": _redact_url(self.base_url)} if self.base_url and self.base_url != OPENAI_API_URL else {}

    def complete(self, messages, params):
        raise ReplayMissError(f"replay backend: no cached reply for model {self.model_id}")


BACKENDS = {"openai": OpenAIBackend, "llama_cpp": LlamaCppBackend, "transformers": TransformersBackend,
            "replay": ReplayBackend}


def make_backend(backend: str, model: str | None = None, base_url: str | None = None,
                 api_key_env: str | None = None, **kwargs: Any) -> Backend:
    """Build a backend by kind; ``model`` is a model name, alias or path (see each class). ``replay`` and
    ``llama_cpp`` default to the packaged Qwen GGUF; ``base_url``/``api_key_env`` concern ``openai`` (and
    ``replay``, which with a ``base_url`` replays the calls made against that server)."""
    from .. import offline

    if backend not in BACKENDS:
        raise ValueError(f"unknown LLM backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if backend == "openai":
        kwargs.update(base_url=base_url, api_key_env=api_key_env)
    elif backend == "replay":
        kwargs.update(base_url=base_url)
    model = model or (defaults.LLM if backend in ("replay", "llama_cpp") else None)
    if model is None:
        raise ValueError(f"the {backend} backend needs a model name (--llm)")
    return BACKENDS[backend](model=model, **kwargs)
