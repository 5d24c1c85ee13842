"""Sentence embedders behind one interface: ``embedder.encode(texts) -> (n, d) float32, rows L2-normalised``.

Three ways to run a model:
- ``sentence-transformers``: the model's own pooling and normalisation (MiniLM, mpnet, BGE...);
- ``flag``: FlagEmbedding's ``FlagModel`` with a configurable pooling (BGE's own: CLS);
- ``release``: what the ProLab release did with BGE: transformers ``AutoModel``, lower-cased text,
  attention-mask **mean** pooling, L2 normalisation per sentence.

Model names resolve to offline folders where a package ships the model (``all-MiniLM-L6-v2``,
``all-mpnet-base-v2``), to a local path, or to the Hugging Face hub when it is reachable. An unreachable
model is a clear error that names the offline substitutes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ..progress import tqdm

from .. import defaults as _defaults
from .. import offline, paths

KINDS = ("sentence-transformers", "flag", "release")


class EmbedderUnavailable(RuntimeError):
    """The model is neither packaged, nor on disk, nor reachable on the hub."""


@dataclass(frozen=True)
class EmbedderDefaults:
    kind: str = _defaults.EMBEDDER_KIND
    batch_size: int = 64
    max_length: int = 128        # descriptions are one short phrase
    pooling: str = "cls"         # flag kind only: FlagModel's pooling_method ("cls" for BGE, "mean" for MiniLM)
    device: str | None = None    # None: cuda if available, else cpu


def resolve_model(name: str) -> tuple[str, str]:
    """(canonical id, local folder) for an offline alias, a local path, or a hub name reachable now."""
    alias = offline.EMBEDDER_ALIASES.get(name.lower())
    if alias:
        return alias[0], str(alias[1]())
    p = Path(name).expanduser()
    if p.exists():  # two local folders may share a name: the id carries a hash of the full path
        from ..files import stable_hash

        return f"{paths.slug(p.name)}-{stable_hash(str(p.resolve()), 6)}", str(p)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(name, local_files_only=True)
    except Exception:
        local = None
    if local is None and os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        try:
            local = snapshot_download(name, etag_timeout=10)
        except Exception as e:  # no network, unknown repo, gated model...
            raise EmbedderUnavailable(
                f"embedder {name!r} could not be loaded: no local copy and the hub is not reachable "
                f"({type(e).__name__}). Offline substitutes: {offline.OFFLINE_SUBSTITUTES}.") from None
    if local is None:
        raise EmbedderUnavailable(
            f"embedder {name!r} is not available offline (HF_HUB_OFFLINE is set and there is no local copy). "
            f"Offline substitutes: {offline.OFFLINE_SUBSTITUTES}.")
    return paths.slug(name), local  # org/name: orgA/x and orgB/x stay apart


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


class Embedder:
    kind: str = ""
    model_id: str = ""
    dim: int = 0

    @property
    def embedder_id(self) -> str:
        """Identifies model *and* method: the key of the embedding cache and part of artefact names."""
        return f"{self.model_id}__{self.variant}"

    @property
    def variant(self) -> str:
        d = getattr(self, "defaults", None)
        extra = f"-len{d.max_length}" if d is not None and d.max_length != EmbedderDefaults.max_length else ""
        return self.kind + extra

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        raise NotImplementedError


class SentenceTransformerEmbedder(Embedder):
    kind = "st"

    def __init__(self, name: str, defaults: EmbedderDefaults = EmbedderDefaults()):
        from sentence_transformers import SentenceTransformer

        self.model_id, folder = resolve_model(name)
        self.defaults = defaults
        self.model = SentenceTransformer(folder, device=_device(defaults.device))
        self.model.max_seq_length = min(self.model.max_seq_length or defaults.max_length, defaults.max_length)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts, progress=False):
        out = self.model.encode(list(texts), batch_size=self.defaults.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=progress)
        return out.astype(np.float32, copy=False)


class FlagEmbedder(Embedder):
    kind = "flag"

    def __init__(self, name: str, defaults: EmbedderDefaults = EmbedderDefaults()):
        try:
            from FlagEmbedding import FlagModel
        except ImportError as e:
            raise EmbedderUnavailable("the flag embedder needs `pip install 'prolab[embed]'` (FlagEmbedding)") from e
        self.model_id, folder = resolve_model(name)
        self.defaults = defaults
        dev = _device(defaults.device)
        self.model = FlagModel(folder, pooling_method=defaults.pooling, normalize_embeddings=True,
                               use_fp16=dev == "cuda", devices=dev)
        self.dim = int(self.model.encode(["x"]).shape[-1])

    @property
    def variant(self):
        extra = f"-len{self.defaults.max_length}" if self.defaults.max_length != EmbedderDefaults.max_length else ""
        return f"flag-{self.defaults.pooling}{extra}"

    def encode(self, texts, progress=False):
        out = self.model.encode(list(texts), batch_size=self.defaults.batch_size, max_length=self.defaults.max_length,
                                convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


class ReleaseEmbedder(Embedder):
    """The release's recipe: lower-case, AutoModel, attention-mask mean pooling, L2 norm."""
    kind = "release"

    def __init__(self, name: str, defaults: EmbedderDefaults = EmbedderDefaults()):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_id, folder = resolve_model(name)
        self.defaults = defaults
        self.device = _device(defaults.device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def encode(self, texts, progress=False):
        torch = self._torch
        out = []
        bs = self.defaults.batch_size
        for i in tqdm(range(0, len(texts), bs), desc="embedding", disable=not progress):
            batch = [t.lower() for t in texts[i:i + bs]]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.defaults.max_length,
                                 return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            out.append(mean_pool(hidden, enc["attention_mask"]).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


def mean_pool(hidden, attention_mask):
    """Average of the token vectors that the attention mask keeps, then L2-normalised (torch tensors)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed / counts, dim=-1)


_KIND_CLASSES = {"sentence-transformers": SentenceTransformerEmbedder, "st": SentenceTransformerEmbedder,
                 "flag": FlagEmbedder, "release": ReleaseEmbedder}


def make_embedder(name: str = _defaults.EMBEDDER, kind: str = _defaults.EMBEDDER_KIND,
                  defaults: EmbedderDefaults | None = None, progress: bool = False, **overrides) -> Embedder:
    """Build an embedder; ``kind`` is one of sentence-transformers, flag, release. ``progress``: a bar while the
    library is imported and the weights are read (seconds on a CPU, otherwise a silent pause)."""
    if kind not in _KIND_CLASSES:
        raise ValueError(f"unknown embedder kind {kind!r}; choose one of {', '.join(KINDS)}")
    from dataclasses import replace

    from ..progress import tqdm

    d = replace(defaults or EmbedderDefaults(), kind=kind, **overrides)
    with tqdm(total=1, desc=f"loading embedder {name}", disable=not progress) as bar:
        emb = _KIND_CLASSES[kind](name, d)
        bar.update()
    return emb
