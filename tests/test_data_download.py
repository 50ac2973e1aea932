"""Downloads (`aevb.data.download`) from a local HTTP server: verified, atomic, mirrors tried in turn, the
offline and corrupt-file messages; a failed download leaves nothing behind, not even the folders it made."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from aevb.data import BUILTIN, load_dataset
from aevb.data.download import fetch, sha256_file
from aevb.data.formats import read_idx
from aevb.errors import DataError
from published import LABELS_GZ, LABELS_SHA, MNIST_TEST_COUNTS

# --- download -------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture()
def server(tmp_path: Path, shared_data: Path):
    """A local HTTP server over a folder holding copies of two small real files; yields its URL."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(shared_data / "mnist" / LABELS_GZ, root)
    shutil.copy(shared_data / "frey-face" / "frey_rawface.mat", root)
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_writes_the_verified_file(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "out" / LABELS_GZ
    # The first mirror is missing the file (404); the second serves it.
    assert fetch([server + "nope.gz", server + LABELS_GZ], dest, LABELS_SHA, timeout=5) == dest
    assert sha256_file(dest) == LABELS_SHA
    assert np.bincount(read_idx(dest)).tolist() == MNIST_TEST_COUNTS
    assert sorted(p.name for p in dest.parent.iterdir()) == [LABELS_GZ]


def test_fetch_wrong_checksum_leaves_nothing(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "out" / LABELS_GZ
    with pytest.raises(DataError, match=f"cannot download {LABELS_GZ} .*checksum mismatch"):
        fetch([server + LABELS_GZ], dest, "0" * 64, timeout=5)
    assert not dest.parent.exists()  # the folder the download made is gone too


def test_fetch_unreachable(tmp_path: Path) -> None:
    dest = tmp_path / "x.gz"
    with pytest.raises(DataError, match=r"cannot download x\.gz \(http://127\.0\.0\.1:1/x\.gz: "):
        fetch(["http://127.0.0.1:1/x.gz"], dest, LABELS_SHA, timeout=2)
    assert list(tmp_path.iterdir()) == []


def _with_urls(monkeypatch: pytest.MonkeyPatch, name: str, base: str) -> None:
    """Point a built-in dataset's files at `base` instead of the internet."""
    spec = BUILTIN[name]
    files = tuple(dataclasses.replace(f, urls=(base + f.name,)) for f in spec.files)
    monkeypatch.setitem(BUILTIN, name, dataclasses.replace(spec, files=files))


def test_builtin_is_downloaded_when_missing(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_urls(monkeypatch, "frey-face", server)
    data = load_dataset("frey-face", data_dir=tmp_path / "cache")
    assert [len(x) for x in (data.train, data.valid, data.test)] == [1565, 200, 200]
    assert (tmp_path / "cache" / "frey-face" / "frey_rawface.mat").is_file()


def test_offline_error_names_files_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_urls(monkeypatch, "mnist", "http://127.0.0.1:1/")
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("mnist: cannot download ")
    names = [f.name for f in BUILTIN["mnist"].files]
    assert f"place {', '.join(names)} in {tmp_path / 'mnist'}/ (see README: Datasets)" in message
    assert list(tmp_path.iterdir()) == []  # not even the folder it would have made
    with pytest.raises(DataError, match="download is off; place train-images"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_corrupt_builtin_file_is_named(shared_data: Path, tmp_path: Path) -> None:
    shutil.copytree(shared_data / "frey-face", tmp_path / "frey-face")
    path = tmp_path / "frey-face" / "frey_rawface.mat"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:400_000])
    with pytest.raises(DataError, match="frey_rawface.mat in .* does not match its published SHA-256"):
        load_dataset("frey-face", data_dir=tmp_path, download=False)


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
