"""Stage-2 speed: the kit's encode throughput vs raw sentence-transformers on the same descriptions, the
cached re-run speed-up, and clustering time per method at K=256 for 384-d and 768-d embeddings.
Prints figures; asserts nothing.

    .venv/bin/python bench/bench_properties.py [--n_texts 3000] [--n_cluster 1700] [--n_properties 256]
"""
import argparse
import os
import tempfile
import time
from dataclasses import replace

import numpy as np


def committed_descriptions(n):
    """Unique descriptions from the committed descriptor files (real LLM output), first n."""
    from prolab import paths
    from prolab.describe import load_descriptors

    seen = {}
    for f in sorted((paths.repo_root() / "descriptors").glob("*/*__*.json")):
        if f.name.endswith(".meta.json"):
            continue
        for descs in load_descriptors(f).values():
            for d in descs:
                seen.setdefault(d, None)
    texts = list(seen)
    return texts[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n_texts", type=int, default=3000)
    ap.add_argument("--n_cluster", type=int, default=1700)
    ap.add_argument("--n_properties", type=int, default=256)
    a = ap.parse_args()
    os.environ["PROLAB_CACHE"] = tempfile.mkdtemp(prefix="prolab-bench-")  # a cold embedding cache
    import torch
    from sentence_transformers import SentenceTransformer

    from prolab import offline
    from prolab.properties import ClusteringDefaults, EmbeddingCache, cluster, make_embedder

    texts = committed_descriptions(a.n_texts)
    print(f"{len(texts)} unique committed descriptions; torch threads {torch.get_num_threads()}")

    raw = SentenceTransformer(str(offline.minilm_dir()), device="cpu")
    raw.encode(texts[:64], batch_size=64)  # warm-up
    t0 = time.perf_counter()
    ref = raw.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    t_raw = time.perf_counter() - t0

    kit = make_embedder("all-MiniLM-L6-v2")
    kit.encode(texts[:64])  # warm-up
    t0 = time.perf_counter()
    x384 = EmbeddingCache(kit.embedder_id).encode(kit, texts)
    t_kit = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = EmbeddingCache(kit.embedder_id).encode(kit, texts)  # fresh instance: reads the shards from disk
    t_cached = time.perf_counter() - t0
    assert np.allclose(again, x384)
    print(f"MiniLM encode, raw sentence-transformers: {len(texts) / t_raw:8.1f} texts/s ({t_raw:.1f} s)")
    print(f"MiniLM encode, kit (through the cache):   {len(texts) / t_kit:8.1f} texts/s ({t_kit:.1f} s)  "
          f"ratio kit/raw = {t_raw / t_kit:.3f}; max |diff| = {np.abs(ref - x384).max():.1e}")
    print(f"cached re-run: {t_cached * 1000:.1f} ms  speed-up x{t_kit / t_cached:.0f}")

    sub = texts[:a.n_cluster]
    mp = make_embedder("all-mpnet-base-v2")
    t0 = time.perf_counter()
    x768 = EmbeddingCache(mp.embedder_id).encode(mp, sub)
    print(f"mpnet encode of {len(sub)} texts: {time.perf_counter() - t0:.1f} s")
    base = ClusteringDefaults()
    methods = {"kmeans": base, "gmm-spherical": replace(base, method="gmm", covariance_type="spherical"),
               "gmm-diag": replace(base, method="gmm", covariance_type="diag"), "vmf": replace(base, method="vmf")}
    print(f"clustering {len(sub)} descriptions into K={a.n_properties}:")
    for name, d in methods.items():
        row = []
        for x in (x384[:len(sub)], x768):
            t0 = time.perf_counter()
            res = cluster(x, a.n_properties, d)
            row.append(f"{x.shape[1]}-d {time.perf_counter() - t0:6.2f} s ({res.n_empty} empty)")
        print(f"  {name:14s} " + "   ".join(row))


if __name__ == "__main__":
    main()
