"""Atomic local file writes: write under a hidden temporary name in the target's folder, then
``os.replace`` it over the target, so a reader never sees a half-written file and an interrupted
write leaves the old file (or none) plus no temporary behind.

Temporary names are ``.{name}.tmp-{random}{suffix}``: hidden (folder scans skip dot files) and
the pattern ``gid prepare`` removes after killed runs. Remote ``gs://`` paths go through
`data_pipelines.storage.write_atomic`.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", *, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path next to ``path`` to write to (by any library); on success it
    replaces ``path``, on an exception it is removed.

    ``suffix``: the temporary's extension, for writers that pick the format from it (``".png"``,
    ``".mp4"``) or append one (``np.savez`` adds ``".npz"``). ``fsync``: flush the file to disk
    before the rename (for files other processes wait on).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path, text: str, *, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path, obj: Any, *, fsync: bool = False, **dumps_kwargs) -> Path:
    """``json.dumps(obj, **dumps_kwargs)`` written atomically."""
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs), fsync=fsync)
