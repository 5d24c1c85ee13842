"""Image-caption pairs from WebDataset shards: the form CC3M, CC12M and RedCaps are distributed in for GroupViT's
and PGSeg's training (img2dataset writes them): plain tar files in which the files of one sample share a key,
``000123.jpg`` beside ``000123.txt`` (and ``000123.json``), samples in order.

The reader is the kit's own, on the standard library's ``tarfile`` and PIL: the format is plain tar, and the
``webdataset`` package is not in the kit's lock. It streams (one member at a time, no index), skips a sample
without an image or a caption and counts it, and stops at an image it cannot decode, naming the shard and the
sample's key (a corrupt shard is worth knowing about before a long run, not after). Shard lists are written as WebDataset writes them: ``cc3m/{00000..00331}.tar`` (a numeric brace
range, zero-padded as written), several patterns separated by ``::``.
"""
from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TEXT_EXTS = ("txt", "caption")
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_shards(pattern: str) -> list[str]:
    """``a/{000..002}.tar`` -> ``a/000.tar a/001.tar a/002.tar``; ``::`` joins several patterns."""
    out: list[str] = []
    for part in pattern.split("::"):
        m = _RANGE.search(part)
        if not m:
            out.append(part)
            continue
        lo, hi = m.group(1), m.group(2)
        if int(hi) < int(lo):
            raise ValueError(f"shard pattern {part!r}: the range {lo}..{hi} runs backwards")
        width = len(lo)
        for i in range(int(lo), int(hi) + 1):
            out.extend(expand_shards(part[:m.start()] + str(i).zfill(width) + part[m.end():]))
    return out


@dataclass
class Pair:
    key: str
    image: "object"          # a PIL image, RGB
    caption: str
    shard: str


def _key_ext(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    folder = name[: len(name) - len(base)]
    key, _, ext = base.partition(".")                    # WebDataset: the key ends at the first dot
    return folder + key, ext.lower()


def read_shard(path: str | Path, stats: dict | None = None) -> Iterator[Pair]:
    """The image-caption pairs of one shard, in order. ``stats`` (a dict) counts ``pairs`` and ``skipped``."""
    from PIL import Image

    stats = stats if stats is not None else {}
    stats.setdefault("pairs", 0)
    stats.setdefault("skipped", 0)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shard {path} does not exist")

    def emit(key, files):
        image = next((files[e] for e in IMAGE_EXTS if e in files), None)
        text = next((files[e] for e in TEXT_EXTS if e in files), None)
        if image is None or text is None:
            stats["skipped"] += 1
            return None
        try:
            img = Image.open(io.BytesIO(image)).convert("RGB")
        except Exception as e:  # a truncated or non-image member: stop, naming the shard and the sample
            raise ValueError(f"shard {path}: sample {key!r} has an unreadable image ({e})") from e
        stats["pairs"] += 1
        return Pair(key, img, text.decode("utf-8", errors="replace").strip(), str(path))

    try:
        with tarfile.open(path, mode="r|*") as tar:          # a stream: no seeking, any compression
            key, files = None, {}
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _key_ext(member.name)
                if k != key and key is not None:
                    pair = emit(key, files)
                    if pair is not None:
                        yield pair
                    files = {}
                key = k
                files[ext] = tar.extractfile(member).read()
            if key is not None:
                pair = emit(key, files)
                if pair is not None:
                    yield pair
    except tarfile.TarError as e:
        raise ValueError(f"shard {path}: not a readable tar file ({e})") from e


def iter_pairs(pattern: str, stats: dict | None = None) -> Iterator[Pair]:
    """Every pair of every shard of ``pattern``, shard after shard."""
    shards = expand_shards(pattern)
    if not shards:
        raise ValueError(f"shard pattern {pattern!r} names no shard")
    for shard in shards:
        yield from read_shard(shard, stats)


__all__ = ["IMAGE_EXTS", "TEXT_EXTS", "expand_shards", "Pair", "read_shard", "iter_pairs"]
