"""What the user sees: a recovered checkpoint is one warning, a full disk one error line, and
restoring or reading data prints none of the libraries' known noise (gid_jax/logs.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = ["--config", "configs/toy.py:tiny", "--config.train.num_steps=12",
       "--config.checkpoint.every_steps=4", "--config.train.log_every=4"]
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ([DIWEC]) ")   # the `gid` log format


def gid_train(workdir, prefix=()):
    """`gid train` of the toy task in a subprocess: (return code, its stderr + stdout lines)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    cmd = [*prefix, sys.executable, "-m", "gid_jax.cli", "train", "--workdir", str(workdir), *TOY]
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    return r.returncode, (r.stderr + r.stdout).splitlines()


def levels(lines, level):
    return [line for line in lines if (m := LOG_LINE.match(line)) and m.group(1) == level]


def test_truncated_checkpoint_is_one_warning(tmp_path):
    wd = tmp_path / "run"
    code, lines = gid_train(wd)
    assert code == 0, "\n".join(lines[-30:])
    for victim in (wd / "checkpoints" / "12" / "state" / "d").iterdir():
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    code, lines = gid_train(wd)
    text = "\n".join(lines)
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and "Event loop is closed" not in text, text[:3000]
    warnings = levels(lines, "W")
    assert len(warnings) == 1 and "step 12" in warnings[0] and "falling back" in warnings[0], text
    assert not levels(lines, "E")
    assert f"trained toy to step 12; checkpoints in {wd}" in lines


def _private_tmpfs_works(mountpoint: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                        f"mount -t tmpfs -o size=200k tmpfs '{mountpoint}'"], capture_output=True)
    return r.returncode == 0


def test_full_disk_is_one_error_line(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _private_tmpfs_works(disk):
        pytest.skip("needs `unshare --user --mount` to fill a private 200 kB tmpfs")
    # The toy's first checkpoint fits in 200 kB, the second does not.
    fill = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            'mount -t tmpfs -o size=200k tmpfs "$0" && exec "$@"', str(disk)]
    code, lines = gid_train(disk / "run", prefix=fill)
    text = "\n".join(lines)
    assert code == 2, text[-3000:]
    assert "Traceback" not in text and "Event loop is closed" not in text, text[:3000]
    assert not levels(lines, "E") and not levels(lines, "W"), text[:3000]
    assert [line for line in lines if "error" in line.lower()] == [lines[-1]], text[:3000]
    assert lines[-1].startswith("gid train: error: ") and "no space left on device" in lines[-1]


def test_restoring_a_checkpoint_is_quiet(tmp_path, caplog):
    from gid_jax.train import train
    from gid_jax.train.checkpoint import Checkpointer, load_params_from, restore_model
    from gid_jax.train.trainer import Trainer
    from gid_jax.train.toy import make_toy_task, toy_train_config

    c = toy_train_config(num_steps=2)
    c.checkpoint.update(every_steps=2, keep=1)
    task = make_toy_task(c)
    train(task, c, tmp_path)
    trainer = Trainer(task, c)
    state = trainer.init_state(1)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        ck = Checkpointer(tmp_path / "checkpoints", c.checkpoint, read_only=True)
        assert ck.restore(trainer.abstract_state, task.create_train_iterator(
            c, batch_size=8, process_index=0, process_count=1))[0] == 2
        ck.close()
        load_params_from(tmp_path, {"params": state.params, "rest": state.rest})
        restore_model(tmp_path, trainer.model(state))
    loud = [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud
    orbax = " ".join(r.getMessage() for r in caplog.records)
    assert "could not be restored" not in orbax and "read only" not in orbax


READ_DATASET = r"""
import json, logging, sys
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger().addHandler(Keep())
import tensorflow_datasets as tfds

def read():
    builder = tfds.builder_from_directory(sys.argv[1])
    next(iter(builder.as_dataset(split="train")))
    return sum("FeatureConnector.dtype" in m for m in messages)

before = read()
from gid_jax.logs import quiet_libraries
quiet_libraries()
print(json.dumps({"without": before, "with": read() - before}))
"""


def test_reading_a_dataset_has_no_dtype_warning(prepared_tiny):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", READ_DATASET,
                        str(prepared_tiny / "gid_motion" / "spectral" / "1.0.0")],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    # TFDS still warns (else its filter in gid_jax/logs.py can go) and the filter drops it.
    assert counts["without"] > 0 and counts["with"] == 0, counts
