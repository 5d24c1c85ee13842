"""WebDataset shards (img2dataset's layout: key.jpg + key.txt + key.json per sample) read by prolab.wovss.shards,
written here with the standard library's tarfile as img2dataset writes them."""
import io
import json
import tarfile

import pytest
from PIL import Image

from prolab.wovss.shards import expand_shards, iter_pairs, read_shard


def write_shard(path, samples, gz=False):
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def jpeg(colour):
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, format="JPEG")
    return buf.getvalue()


def test_expand_shards_as_webdataset_writes_them():
    assert expand_shards("cc3m/{00000..00002}.tar") == ["cc3m/00000.tar", "cc3m/00001.tar", "cc3m/00002.tar"]
    assert expand_shards("a/{8..10}.tar::b/x.tar") == ["a/8.tar", "a/9.tar", "a/10.tar", "b/x.tar"]
    with pytest.raises(ValueError, match="backwards"):
        expand_shards("a/{3..1}.tar")


def test_pairs_in_order_incomplete_samples_skipped(tmp_path):
    write_shard(tmp_path / "00000.tar", [
        ("000000000", {"jpg": jpeg("red"), "txt": b"a red square ", "json": json.dumps({"url": "x"}).encode()}),
        ("000000001", {"jpg": jpeg("blue")}),                              # no caption: skipped
        ("000000002", {"png": _png(), "txt": "un caf\u00e9".encode()}),
    ])
    write_shard(tmp_path / "00001.tar", [("000000003", {"jpg": jpeg("green"), "txt": b"green"})], gz=True)
    stats = {}
    pairs = list(iter_pairs(str(tmp_path / "{00000..00001}.tar"), stats))
    assert [p.key for p in pairs] == ["000000000", "000000002", "000000003"]
    assert [p.caption for p in pairs] == ["a red square", "un caf\u00e9", "green"]
    assert pairs[0].image.size == (8, 6) and pairs[0].image.mode == "RGB"
    assert stats == {"pairs": 3, "skipped": 1}


def _png():
    buf = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_shards_are_named(tmp_path):
    write_shard(tmp_path / "bad.tar", [("k1", {"jpg": b"not an image", "txt": b"x"})])
    with pytest.raises(ValueError, match="bad.tar.*'k1'.*unreadable image"):
        list(read_shard(tmp_path / "bad.tar"))
    (tmp_path / "junk.tar").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="junk.tar.*not a readable tar"):
        list(read_shard(tmp_path / "junk.tar"))
    with pytest.raises(FileNotFoundError, match="missing.tar"):
        list(read_shard(tmp_path / "missing.tar"))
