"""The converted-model cache: where it lives, atomic entries, and rebuilding partial or corrupt ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cmsd_cli.models import cache


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMSD_CACHE", str(tmp_path / "cmsd-cache"))


class CountingBuilder:
    """Writes two files into an entry and counts how often it was asked to."""

    def __init__(self, payload: bytes = b"weights" * 1000):
        self.calls = 0
        self.payload = payload

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        (folder / "model.safetensors").write_bytes(self.payload)
        (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CMSD_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "explicit"

    monkeypatch.delenv("CMSD_CACHE")
    assert cache.cache_root() == tmp_path / "xdg" / "cmsd"

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "cmsd"


def test_entry_has_manifest_and_marker():
    builder = CountingBuilder()

    entry = cache.build_entry("key1", builder, {"kind": "test"})

    assert entry == cache.cache_root() / "converted" / "key1"
    assert (entry / cache.MARKER_NAME).is_file()
    manifest = json.loads((entry / cache.MANIFEST_NAME).read_text())
    assert manifest["format"] == cache.MANIFEST_FORMAT
    assert manifest["source"] == {"kind": "test"}
    assert set(manifest["files"]) == {"model.safetensors", "config.json"}
    assert manifest["files"]["model.safetensors"]["size"] == len(builder.payload)
    assert manifest["files"]["model.safetensors"]["sha256"] == cache.sha256_file(entry / "model.safetensors")
    assert not list(cache.converted_dir().glob(".tmp-*"))


def test_complete_entry_is_reused():
    builder = CountingBuilder()

    first = cache.build_entry("key1", builder, {})
    second = cache.build_entry("key1", builder, {})

    assert first == second
    assert builder.calls == 1


def corrupt_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda entry: corrupt_same_size(entry / "model.safetensors"), id="flipped-byte"),
        pytest.param(lambda entry: (entry / "model.safetensors").write_bytes(b"short"), id="truncated-file"),
        pytest.param(lambda entry: (entry / "config.json").unlink(), id="missing-file"),
        pytest.param(lambda entry: (entry / cache.MARKER_NAME).unlink(), id="no-marker"),
        pytest.param(lambda entry: (entry / cache.MANIFEST_NAME).write_text("{not json"), id="bad-manifest"),
    ],
)
def test_damaged_entry_is_rebuilt(damage, caplog):
    builder = CountingBuilder()
    entry = cache.build_entry("key1", builder, {})
    damage(entry)

    with caplog.at_level(logging.WARNING, logger="cmsd_cli.models.cache"):
        rebuilt = cache.build_entry("key1", builder, {})

    assert builder.calls == 2
    assert rebuilt == entry
    assert cache.verify_entry(rebuilt)
    assert (rebuilt / "model.safetensors").read_bytes() == builder.payload
    assert "is unusable" in caplog.text
    assert not list(cache.converted_dir().glob(".old-*"))


def test_failed_build_leaves_nothing():
    def failing(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        cache.build_entry("key1", failing, {})

    assert not cache.entry_path("key1").exists()
    assert not list(cache.converted_dir().glob(".tmp-*"))


def test_interrupted_build_leftovers_removed():
    stale = cache.converted_dir() / ".tmp-key1-999999-deadbeef"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"partial")

    cache.build_entry("key1", CountingBuilder(), {})

    assert not stale.exists()


def test_missing_entry_is_not_verified_silently(caplog):
    with caplog.at_level(logging.WARNING):
        assert cache.verify_entry(cache.entry_path("absent")) is False
    assert caplog.text == ""
