"""Sentence embedders (offline MiniLM/MPNet from registry packages, hub models where there is a network) and
the content-addressed embedding cache; used by stage 1 (pooling, de-duplication) and stage 2 (clustering)."""
from .cache import EmbeddingCache
from .embedders import Embedder, EmbedderDefaults, EmbedderUnavailable, make_embedder, mean_pool, resolve_model

__all__ = ["EmbeddingCache", "Embedder", "EmbedderDefaults", "EmbedderUnavailable", "make_embedder", "mean_pool",
           "resolve_model"]
