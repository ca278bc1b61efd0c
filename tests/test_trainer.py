"""The generic training loop on a toy task: learning, exact resume, guards, EMA, accumulation, sharding."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from gid_jax.train import Trainer, train
from gid_jax.train.trainer import TrainingDiverged
from gid_jax.train.metrics import read_metrics
from gid_jax.train.optim import create_learning_rate_schedule
from gid_jax.train.toy import FrozenToyTask, make_toy_task, toy_train_config

REPO = Path(__file__).resolve().parents[1]
STEPS = 12

# One training run in a subprocess: args as JSON; optional SIGKILL of itself at `kill_at` once
# checkpoint `wait_for_ckpt` is on disk (a real crash right after a checkpoint).
RUNNER = r"""
import json, os, signal, sys, time
from pathlib import Path
from gid_jax.train.toy import toy_train_config, make_toy_task
from gid_jax.train import train
args = json.loads(sys.argv[1])
c = toy_train_config(**args["train"])
c.checkpoint.update(args.get("checkpoint", {}))
c.mesh.update(args.get("mesh", {}))
hooks = []
if args.get("kill_at"):
    def hook(step, ctx):
        if step == args["kill_at"]:
            ck = ctx.workdir / "checkpoints" / str(args["wait_for_ckpt"])
            deadline = time.time() + 60
            while not ck.is_dir() and time.time() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
    hooks.append(hook)
r = train(make_toy_task(c), c, args["workdir"], hooks=hooks)
print("RESULT", json.dumps({"step": r.step, "preempted": r.preempted, "devices": jax.device_count()}))
""".replace("from gid_jax.train import train", "import jax\nfrom gid_jax.train import train")


def run_subprocess(args: dict, env_extra: dict | None = None, timeout=240):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", RUNNER, json.dumps(args)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def base_config(**train):
    c = toy_train_config(num_steps=STEPS, log_every=1, **train)
    c.checkpoint.update(every_steps=4, keep=3, keep_best=1)
    return c


def losses(workdir, key="train/loss"):
    m = read_metrics(workdir)
    return np.array([float(m[s][key]) for s in sorted(m) if key in m[s]])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 12-step run: its losses are what every resumed run must reproduce."""
    wd = tmp_path_factory.mktemp("reference")
    c = base_config()
    result = train(make_toy_task(c), c, wd)
    return wd, losses(wd), result


def test_loss_decreases_and_outputs(reference):
    wd, ls, result = reference
    assert result.step == STEPS and not result.preempted
    assert len(ls) == STEPS and np.all(np.isfinite(ls))
    assert ls[-4:].mean() < 0.7 * ls[:4].mean()
    assert list(wd.glob("events.out.tfevents*")), "no TensorBoard event file"
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [4, 8, 12]
    assert (wd / "checkpoints" / "12" / "data" / "process_0.json").exists()
    rec = read_metrics(wd)[STEPS]
    assert rec["perf/steps_per_sec"] > 0 and rec["train/skipped_steps_total"] == 0


def test_kill_and_resume_is_exact(reference, tmp_path):
    _, ref, _ = reference
    wd = tmp_path / "run"
    args = {"train": {"num_steps": STEPS, "log_every": 1},
            "checkpoint": {"every_steps": 4, "keep": 3, "keep_best": 1}, "workdir": str(wd)}
    killed = run_subprocess(dict(args, kill_at=7, wait_for_ckpt=4))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (wd / "checkpoints" / "4").is_dir()
    resumed = run_subprocess(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert '"step": 12' in resumed.stdout
    np.testing.assert_array_equal(losses(wd), ref)   # bit-exact, step for step


def test_sigterm_saves_then_resumes_exactly(reference, tmp_path):
    _, ref, _ = reference
    c = base_config()

    def preempt(step, ctx):
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    r = train(make_toy_task(c), c, tmp_path, hooks=[preempt])
    assert r.preempted and r.step == 6
    assert (tmp_path / "checkpoints" / "6").is_dir()
    r2 = train(make_toy_task(c), c, tmp_path)
    assert r2.step == STEPS and not r2.preempted
    np.testing.assert_array_equal(losses(tmp_path), ref)


def test_corrupt_latest_checkpoint_falls_back(reference, tmp_path, caplog):
    src, ref, _ = reference
    wd = tmp_path / "run"
    shutil.copytree(src, wd)
    # Truncate the array data files of the newest checkpoint (as a full disk or a crash might).
    victims = [p for p in (wd / "checkpoints" / "12" / "state" / "d").iterdir() if p.is_file()]
    assert victims
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    c = base_config()
    with caplog.at_level("WARNING"):
        r = train(make_toy_task(c), c, wd)
    assert r.step == STEPS
    assert any("falling back" in rec.message for rec in caplog.records)
    assert list((wd / "checkpoints_corrupt").iterdir()), "the damaged checkpoint should be kept aside"
    np.testing.assert_array_equal(losses(wd), ref)   # steps 9..12 re-run from checkpoint 8


def _snapshot(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def _one_step_trainer(config, task=None):
    task = task or make_toy_task(config)
    tr = Trainer(task, config)
    state = tr.init_state(0)
    it = task.create_train_iterator(config, batch_size=config.train.batch_size, process_index=0,
                                    process_count=1)
    return tr, state, it


def test_nan_guard_skips_and_counts():
    c = base_config()
    c.toy.nan_at_steps = (1,)
    tr, state, it = _one_step_trainer(c)
    from gid_jax.parallel import host_to_global

    batches = [host_to_global(next(it), tr.mesh) for _ in range(3)]
    tr.compile(batches[0])
    macc = tr.empty_metrics()
    state, macc = tr.step(state, batches[0], macc)
    before = _snapshot(state)
    state, macc = tr.step(state, batches[1], macc)           # the poisoned batch
    after = _snapshot(state)
    assert int(after.step) == 2 and int(after.skipped) == 1
    for name in ("params", "rest", "opt_state", "ema", "rng"):
        jax.tree.map(np.testing.assert_array_equal, getattr(after, name), getattr(before, name))
    state, macc = tr.step(state, batches[2], macc)
    assert int(state.skipped) == 1 and int(state.step) == 3
    m = {k: float(v) for k, v in macc.compute().items()}
    assert np.isfinite(m["loss"]) and m["skipped"] == pytest.approx(1 / 3)


def checkpoint_steps(workdir):
    return sorted(int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    c = base_config(max_nonfinite_steps=3)
    c.toy.nan_at_steps = tuple(range(5, STEPS))        # batch n feeds step n + 1: steps 6.. diverge
    with pytest.raises(TrainingDiverged, match=r"at step 8: 3 consecutive steps \(6-8\).*"
                                               r"last checkpoint is step 4"):
        train(make_toy_task(c), c, tmp_path)
    assert checkpoint_steps(tmp_path) == [4]           # nothing written at or after step 8


def test_a_checkpoint_due_on_a_skipped_step_waits_for_a_finite_one(tmp_path):
    c = base_config()                                  # max_nonfinite_steps: the default
    c.toy.nan_at_steps = (7,)                          # step 8, a checkpoint step, is skipped
    result = train(make_toy_task(c), c, tmp_path)
    assert result.step == STEPS and int(result.state.skipped) == 1
    assert checkpoint_steps(tmp_path) == [4, 9, 12]


def test_grad_accumulation_equals_big_batch():
    results = []
    for k in (1, 4):
        c = base_config(grad_accum_steps=k, batch_size=16, ema_decay=0.0)
        tr, state, it = _one_step_trainer(c)
        from gid_jax.parallel import host_to_global

        batch = host_to_global(next(it), tr.mesh)
        tr.compile(batch)
        state, macc = tr.step(state, batch, tr.empty_metrics())
        results.append((_snapshot(state.params), float(macc.compute()["loss"])))
    (p1, l1), (p4, l4) = results
    assert l1 == pytest.approx(l4, rel=1e-6)
    # One Adam step moves each weight by ~lr·sign(g); f32 summation order differs → ~1e-7 relative.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p1, p4)


def test_frozen_params_bit_identical_and_ema_matches_numpy():
    c = base_config(ema_decay=0.9)
    c.toy.frozen = True
    task = make_toy_task(c)
    assert isinstance(task, FrozenToyTask)
    tr, state, it = _one_step_trainer(c, task)
    from gid_jax.parallel import host_to_global

    init = _snapshot(state)
    assert set(init.params.keys()) == {"l2"} and "l1" in init.rest   # l1 is frozen
    batches = [host_to_global(next(it), tr.mesh) for _ in range(3)]
    tr.compile(batches[0])
    macc = tr.empty_metrics()
    ema_ref = init.params
    for b in batches:
        state, macc = tr.step(state, b, macc)
        p = _snapshot(state.params)
        ema_ref = jax.tree.map(lambda e, x: 0.9 * e + 0.1 * x, ema_ref, p)   # numpy float32 reference
    jax.tree.map(np.testing.assert_array_equal, _snapshot(state.rest), init.rest)
    assert not np.array_equal(np.asarray(state.params["l2"]["kernel"][...]), init.params["l2"]["kernel"][...])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), _snapshot(state.ema), ema_ref)


def test_init_from_copies_filtered_params(reference):
    src, _, _ = reference
    c = base_config(ema_decay=0.5)
    c.toy.frozen = True                       # stage-2 style: 'l1' frozen (in rest), 'l2' trainable
    c.train.init_from.update(workdir=str(src), filter="l1", use_ema=True)
    task = make_toy_task(c)
    tr = Trainer(task, c)
    fresh = tr.init_state(1)
    fresh_np = _snapshot(fresh)
    loaded = tr.apply_init_from(fresh, c.train.init_from)
    src_tr = Trainer(make_toy_task(base_config()), base_config())
    from gid_jax.train.checkpoint import Checkpointer

    ck_cfg = base_config().checkpoint
    ck_cfg.keep_best = 0
    ck = Checkpointer(src / "checkpoints", ck_cfg, read_only=True)
    import orbax.checkpoint as ocp

    src_state = ck.manager.restore(12, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(src_tr.abstract_state)))["state"]
    np.testing.assert_array_equal(np.asarray(loaded.rest["l1"]["kernel"][...]),
                                  np.asarray(src_state.ema["l1"]["kernel"][...]))
    np.testing.assert_array_equal(np.asarray(loaded.params["l2"]["kernel"][...]),
                                  fresh_np.params["l2"]["kernel"][...])   # not matched by the filter


def test_init_from_refuses_another_architecture(reference):
    """A narrower model matches every path of the source but no shape: copying half of it (the
    LDM stages' frozen VAE built at another width) must stop the run, not warn."""
    src, _, _ = reference
    c = base_config()
    c.toy.hidden = 16                          # the source run's is 32
    c.train.init_from.update(workdir=str(src), filter=".*")
    tr = Trainer(make_toy_task(c), c)
    with pytest.raises(ValueError, match=r"init_from: l1/bias has shape \(32,\) in .* but \(16,\) here"):
        tr.apply_init_from(tr.init_state(1), c.train.init_from)


def test_learning_rate_schedules():
    c = toy_train_config()
    c.optimizer.update(learning_rate=1.0, warmup_steps=10, schedule="cosine", decay_steps=110,
                       end_lr_factor=0.1)
    s = create_learning_rate_schedule(c.optimizer, 1000)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)
    assert float(s(110)) == pytest.approx(0.1, rel=1e-5)
    c.optimizer.update(schedule="linear")
    assert float(create_learning_rate_schedule(c.optimizer, 1000)(60)) == pytest.approx(0.55, rel=1e-5)
    c.optimizer.update(schedule="bogus")
    with pytest.raises(ValueError, match="schedule"):
        create_learning_rate_schedule(c.optimizer, 1000)


def test_eight_devices_data_fsdp_mesh_matches_one_device(reference, tmp_path):
    _, ref, _ = reference
    args = {"train": {"num_steps": STEPS, "log_every": 1},
            "checkpoint": {"every_steps": 4, "keep": 3, "keep_best": 1},
            "mesh": {"data": 2, "fsdp": 4, "tensor": 1}, "workdir": str(tmp_path)}
    r = run_subprocess(args, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"devices": 8' in r.stdout
    # Same math, different f32 reduction order (8 shards + all-reduce): ~1e-7 relative per op;
    # after 12 Adam steps the losses agree to well within 1e-4 relative.
    np.testing.assert_allclose(losses(tmp_path), ref, rtol=1e-4)
