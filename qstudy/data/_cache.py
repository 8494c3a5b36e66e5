"""A disk cache of tokenized data, so the trials of a study tokenize their data once.

Every trial of a study tokenizes the same problems with the same tokenizer; on GSM8K's
7,473 training problems that is seconds of each trial's start-up. `cached` keeps what a
build returned (tensors, lists, strings) in ``<cache dir>/<key>.pt``, the key a hash of
everything the result depends on (`fingerprint`): the data settings, the contents of the
data and tokenizer files (`file_fingerprint`), the source of the code that builds it and
the versions of transformers and tokenizers. A changed input is a new key, never a stale
hit; old entries are left for the user to delete.

Writes are atomic: the result goes to a temporary file in the cache folder, then
``os.replace`` puts it in place, so a reader sees a whole file or none. Two trials
starting at once on one node may both build and both write; they write the same bytes,
and the second replace wins. The default folder, ``~/.cache/qstudy/data``, is per node
(a cluster's nodes each build once); pointing ``$QSTUDY_DATA_CACHE`` at a shared
filesystem shares it between nodes, where the rename is atomic as well (NFS renames on
the server).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["cached", "data_cache_dir", "file_fingerprint", "fingerprint"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Checkpoint weights: a tokenizer never reads them, and hashing gigabytes would cost more
# than the tokenizing the cache saves.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx")


def data_cache_dir() -> Path:
    """Where tokenized data is cached: ``$QSTUDY_DATA_CACHE``, else ``~/.cache/qstudy/data``."""
    return Path(os.environ.get("QSTUDY_DATA_CACHE") or Path.home() / ".cache" / "qstudy" / "data").expanduser()


def fingerprint(parts: Any) -> str:
    """A hex SHA-256 of ``parts`` (JSON-serializable; dict keys in sorted order)."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_fingerprint(path: str | Path) -> dict[str, str]:
    """The SHA-256 of a file, or of every file directly in a folder but checkpoint weights:
    ``{name: hex digest}``."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return {p.name: _sha256(p) for p in files if not p.name.endswith(_WEIGHT_SUFFIXES)}


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached(cache_dir: str | Path, key: str, build: Callable[[], T]) -> T:
    """``build()``'s result, read from ``cache_dir/<key>.pt`` when an earlier call wrote it.

    Args:
        cache_dir: The cache folder (created when missing).
        key: What the result depends on, as from `fingerprint`.
        build: Makes the result: tensors, and lists, tuples, dicts, strings and numbers of
            them (what ``torch.load(weights_only=True)`` reads back).

    Returns:
        What ``build`` returned, or an equal value read back from the cache. An entry
        that cannot be read is built again and replaced; one that cannot be written
        (a full or read-only disk) is only logged.
    """
    path = Path(cache_dir) / f"{key}.pt"
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        pass
    except Exception as error:  # noqa: BLE001 - any unreadable entry is rebuilt, not fatal
        logger.warning("data cache %s is unreadable (%s): building it again", path, error)
    value = build()
    try:
        _write_atomically(path, value)
    except OSError as error:  # a full or read-only disk costs the next trial the build, not this one its run
        logger.warning("could not write the data cache %s (%s): the next trial builds it again", path, error)
    return value


def _write_atomically(path: Path, value: Any) -> None:
    """Writes ``value`` to a temporary file next to ``path``, then renames it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(value, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
