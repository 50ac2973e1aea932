"""aevb.data.download.fetch: a failed download leaves nothing behind, not even the folders it made."""

from __future__ import annotations

import hashlib

import pytest

from aevb.data.download import fetch
from aevb.errors import DataError


def test_a_failed_download_leaves_no_empty_folder(tmp_path):
    cache = tmp_path / "cache"  # like a first run: ~/.cache/aevb does not exist yet
    dest = cache / "aevb" / "mnist" / "train-images-idx3-ubyte.gz"
    missing = (tmp_path / "nowhere.gz").as_uri()
    with pytest.raises(DataError, match="cannot download train-images-idx3-ubyte.gz"):
        fetch([missing], dest, "0" * 64)
    assert not cache.exists()


def test_a_failed_download_keeps_folders_that_existed_or_hold_files(tmp_path):
    src = tmp_path / "served.bin"
    src.write_bytes(b"abc")
    folder = tmp_path / "mnist"
    good = fetch([src.as_uri()], folder / "a.gz", hashlib.sha256(b"abc").hexdigest())
    assert good.read_bytes() == b"abc"
    with pytest.raises(DataError, match="checksum mismatch"):  # the second file of the set fails
        fetch([src.as_uri()], folder / "b.gz", "0" * 64)
    assert sorted(p.name for p in folder.iterdir()) == ["a.gz"]  # the verified file stays, no temp file
    empty = tmp_path / "existing"
    empty.mkdir()
    with pytest.raises(DataError):
        fetch([(tmp_path / "nowhere").as_uri()], empty / "c.gz", "0" * 64)
    assert empty.is_dir()  # not ours to remove
