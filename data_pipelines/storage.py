"""Local-or-GCS file access for the prepared data: paths with `://` go through `tf.io.gfile`.

TensorFlow is imported only for remote paths, so local readers and writers stay light.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from gid_jax.atomic import write_bytes_atomic


def is_remote(path: str) -> bool:
    return "://" in str(path)


def join(a: str, *parts: str) -> str:
    return "/".join([str(a).rstrip("/")] + [p.strip("/") for p in parts]) if is_remote(a) \
        else str(Path(a, *parts))


def exists(path: str) -> bool:
    if is_remote(path):
        import tensorflow as tf
        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        import tensorflow as tf
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    return Path(path).read_bytes()


def remove(path: str) -> None:
    if is_remote(path):
        import tensorflow as tf
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
        return
    Path(path).unlink(missing_ok=True)


def write_atomic(path: str, data: bytes) -> None:
    """Writes under a hidden temporary name in the same folder, then renames over `path`. Local
    files go through `gid_jax.atomic`, synced to disk before the rename so that a crash cannot
    leave a complete-looking name over lost data."""
    if not is_remote(path):
        os.makedirs(Path(path).parent, exist_ok=True)
        write_bytes_atomic(path, data, fsync=True)
        return
    parent, name = path.rsplit("/", 1)
    tmp = join(parent, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    import tensorflow as tf
    tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path: str, payload: Any) -> str:
    write_atomic(path, json.dumps(payload, indent=1, sort_keys=True).encode())
    return path
