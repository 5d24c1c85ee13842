"""Embedding cache: vectors keyed by embedder id + a hash of the text, shared across datasets.

Stored as append-only shards (``.npz`` of hashes and float32 vectors, no pickle) in
``paths.embedding_cache_dir(embedder_id)``; each call that computes new vectors writes one shard atomically.
"""
from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import numpy as np

from .. import paths
from ..files import atomic_write_bytes
from .embedders import Embedder


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class EmbeddingCache:
    def __init__(self, embedder_id: str, root=None):
        self.dir = (Path(root) / paths.slug(embedder_id)) if root is not None else paths.embedding_cache_dir(embedder_id)
        self._vectors: dict[str, np.ndarray] = {}
        if self.dir.exists():
            for shard in sorted(self.dir.glob("*.npz")):
                with np.load(shard, allow_pickle=False) as z:
                    for k, v in zip(z["keys"], z["vectors"]):
                        self._vectors[str(k)] = v

    def __len__(self) -> int:
        return len(self._vectors)

    def encode(self, embedder: Embedder, texts: list[str], progress: bool = False) -> np.ndarray:
        """Vectors for ``texts`` in order; only texts never seen by this embedder are computed."""
        keys = [text_hash(t) for t in texts]
        todo: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in self._vectors and k not in todo:
                todo[k] = t
        if todo:
            new = embedder.encode(list(todo.values()), progress=progress)
            buf = io.BytesIO()
            np.savez(buf, keys=np.array(list(todo), dtype="<U32"), vectors=new.astype(np.float32))
            atomic_write_bytes(self.dir / f"shard-{uuid.uuid4().hex[:12]}.npz", buf.getvalue())
            self._vectors.update(zip(todo, new))
        if not texts:
            return np.zeros((0, embedder.dim), np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32, copy=False)
