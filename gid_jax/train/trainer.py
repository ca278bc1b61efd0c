"""The one generic training loop: `train(task, config, workdir)` for every stage.

Per step: host-local batch → global array (sharded by the 'batch' rule of `config.mesh.rules`,
by default over ('data','fsdp')) → one jitted, donated,
explicitly sharded step: (micro-batched) loss and gradients → NaN/inf guard → optax update →
EMA → CLU metric accumulation. Around it: checkpoints (async, with the input position and RNG;
exact resume), SIGTERM → final save, metrics to TensorBoard + metrics.jsonl, clu ReportProgress /
Profile, periodic evaluation, steps/s, examples/s and MFU.

Compile time: the step is compiled ahead of time (`jit(...).lower(...).compile()`, logged in one
line with its FLOPs); `train.compilation_cache_dir` turns on JAX's persistent compilation cache
(default ~/.cache/gid_jax/jax_cache, "" = off), so a rerun or a resume loads the compiled step
instead of compiling it again. `perf/steps_per_sec` leaves out the first step run by a process
(its one-off cost, warm-up of the allocator and the first transfers, goes to
`perf/first_step_seconds`).

Divergence: the guard skips a non-finite step, but a run that keeps producing them has diverged.
After `train.max_nonfinite_steps` consecutive skipped steps `train` raises TrainingDiverged. A
periodic checkpoint that falls due inside such a run of skipped steps waits for a finite step,
so the last good checkpoint is never pushed out by the state of a run that then diverges (the
final and the SIGTERM save are written anyway, unless the run has diverged by then).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import optax
from clu import periodic_actions
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from gid_jax.atomic import write_text_atomic
from gid_jax.parallel import arrays as parr
from gid_jax.parallel.distributed import initialize_distributed
from gid_jax.parallel.mesh import create_mesh, mesh_summary
from gid_jax.parallel.rules import activation_sharding, rules_from_config, tree_shardings
from gid_jax.train import metrics as tm
from gid_jax.train.checkpoint import Checkpointer, load_params_from
from gid_jax.train.optim import create_optimizer, ema_update, schedule_step
from gid_jax.train.state import TrainState, abstract_model, make_init_fn
from gid_jax.train.task import trainable_filter

log = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """Too many consecutive steps with a non-finite loss or gradient (see the module doc)."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    step: int
    preempted: bool
    last_metrics: dict[str, float]
    workdir: Path


class Trainer:
    """Everything about one (task, config, mesh) except the host loop: state creation, the step."""

    def __init__(self, task, config, mesh=None):
        self.task, self.config = task, config
        self.mesh = mesh if mesh is not None else create_mesh(config.mesh)
        self.rules = rules_from_config(config.mesh)
        tc = config.train
        self.num_steps = int(tc.num_steps)
        self.global_batch = int(tc.batch_size)
        self.accum = int(tc.grad_accum_steps)
        if self.accum < 1:
            raise ValueError(f"train.grad_accum_steps={self.accum} must be >= 1")
        self.nan_guard = bool(tc.nan_guard)
        self.ema_decay = float(tc.ema_decay)
        pc, shards = jax.process_count(), parr.batch_shards(self.mesh, self.rules)
        if self.global_batch % pc:
            raise ValueError(f"train.batch_size={self.global_batch} is not divisible by the {pc} processes")
        if self.global_batch % (shards * self.accum):
            raise ValueError(f"train.batch_size={self.global_batch} must be divisible by the batch "
                             f"axes' size ({shards}) × grad_accum_steps ({self.accum})")
        self.tx, self.schedule = create_optimizer(config.optimizer, self.num_steps)
        self.trainable = trainable_filter(task)
        self.graphdef, _, _ = nnx.split(abstract_model(task, config), self.trainable, ...)
        self.init_fn = make_init_fn(task, config, self.tx, self.trainable, self.ema_decay)
        abstract = jax.eval_shape(self.init_fn, jax.random.PRNGKey(0))
        self.state_shardings = tree_shardings(abstract, self.mesh, self.rules)
        self.abstract_state = jax.tree.map(
            lambda s, sub: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), sub),
            self.state_shardings, abstract)
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharding = parr.batch_sharding(self.mesh, self.rules)
        self.metric_collection = None
        self._compiled = None
        self.flops_per_step = None

    # ------------------------------------------------------------------ state
    def init_state(self, seed: int) -> TrainState:
        init = jax.jit(self.init_fn, out_shardings=self.state_shardings)
        return init(jax.random.PRNGKey(int(seed)))

    def apply_init_from(self, state: TrainState, init_cfg) -> TrainState:
        out, names = load_params_from(init_cfg.workdir, {"params": state.params, "rest": state.rest},
                                      filter=init_cfg.filter, use_ema=bool(init_cfg.use_ema),
                                      step=int(init_cfg.step),
                                      source_path=(str(init_cfg.strip_prefix), ""))
        ema = jax.tree.map(jnp.copy, out["params"]) if state.ema is not None else None
        return state.replace(params=out["params"], rest=out["rest"], ema=ema,
                             opt_state=jax.jit(self.tx.init, out_shardings=self.state_shardings.opt_state)(
                                 out["params"]))

    def model(self, state: TrainState, use_ema: bool = False) -> nnx.Module:
        params = state.ema if (use_ema and state.ema is not None) else state.params
        return nnx.merge(self.graphdef, params, state.rest)

    # ------------------------------------------------------------------ the step
    def _loss(self, params, rest, batch, rng):
        model = nnx.merge(self.graphdef, params, rest)
        loss, aux = self.task.loss_fn(model, batch, rng)
        _, _, new_rest = nnx.split(model, self.trainable, ...)
        aux = {k: jnp.asarray(v, jnp.float32) for k, v in dict(aux).items()}
        return jnp.asarray(loss, jnp.float32), (aux, new_rest)

    def _grads(self, params, rest, batch, rng):
        vg = jax.value_and_grad(self._loss, has_aux=True)
        k = self.accum
        if k == 1:
            (loss, (aux, rest)), grads = vg(params, rest, batch, rng)
            return grads, loss, aux, rest
        # Micro-batch i = examples i, i+k, i+2k, ...: every device keeps its own examples.
        micro = jax.tree.map(lambda x: x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1), batch)
        micro = jax.lax.with_sharding_constraint(
            micro, NamedSharding(self.mesh, parr.batch_spec(self.mesh, extra_leading=1, rules=self.rules)))
        first = jax.tree.map(lambda x: x[0], micro)
        aux_shape = jax.eval_shape(lambda: vg(params, rest, first, rng)[0][1][0])
        zeros_aux = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape)
        zeros_g = jax.tree.map(jnp.zeros_like, params)

        def body(carry, xs):
            g_acc, l_acc, a_acc, rest = carry
            mb, i = xs
            (l, (a, rest)), g = vg(params, rest, mb, jax.random.fold_in(rng, i))
            return (jax.tree.map(jnp.add, g_acc, g), l_acc + l, jax.tree.map(jnp.add, a_acc, a), rest), None

        (g, l, a, rest), _ = jax.lax.scan(body, (zeros_g, jnp.zeros((), jnp.float32), zeros_aux, rest),
                                          (micro, jnp.arange(k)))
        return jax.tree.map(lambda x: x / k, g), l / k, jax.tree.map(lambda x: x / k, a), rest

    def _raw_step(self, state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        grads, loss, aux, new_rest = self._grads(state.params, state.rest, batch, rng)
        grad_norm = optax.global_norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if not self.nan_guard:
            ok = jnp.ones((), bool)
        count = schedule_step(state.opt_state)
        lr = self.schedule(count) if count is not None else jnp.zeros(())
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema, params, self.ema_decay) if state.ema is not None else None

        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

        new_state = state.replace(
            step=state.step + 1, params=keep(params, state.params), rest=keep(new_rest, state.rest),
            opt_state=keep(opt_state, state.opt_state), ema=keep(ema, state.ema),
            skipped=state.skipped + (~ok).astype(jnp.int32))
        values = dict(loss=loss, grad_norm=grad_norm, learning_rate=jnp.asarray(lr, jnp.float32),
                      skipped=(~ok).astype(jnp.float32), **aux)
        return new_state, values, ok

    def _step(self, state, batch, macc):
        new_state, values, ok = self._raw_step(state, batch)
        one = self.metric_collection.single_from_model_output(
            mask=ok.reshape(1), **{k: jnp.reshape(v, (1,)).astype(jnp.float32) for k, v in values.items()})
        return new_state, macc.merge(one)

    def compile(self, batch) -> Any:
        """AOT-compile the step for `batch`'s shapes; returns the compiled step (also stored)."""
        abstract_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), batch)
        names = list(jax.eval_shape(self._raw_step, self.abstract_state, abstract_batch)[1].keys())
        self.metric_collection = tm.make_collection(names, unmasked=("skipped",))
        empty = self.empty_metrics()
        jitted = jax.jit(self._step,
                         in_shardings=(self.state_shardings, self.batch_sharding, self.replicated),
                         out_shardings=(self.state_shardings, self.replicated),
                         donate_argnums=(0, 2))
        t0 = time.perf_counter()
        with activation_sharding(self.mesh, self.rules):   # models' `constrain` calls apply
            lowered = jitted.lower(self.abstract_state, abstract_batch, empty)
        t1 = time.perf_counter()
        self._compiled = lowered.compile()
        self.lower_seconds, self.compile_seconds = t1 - t0, time.perf_counter() - t0
        flops = tm.compiled_flops(self._compiled)
        # XLA counts a while-loop body once: scale the scanned micro-batch work by k.
        self.flops_per_step = None if flops is None else flops * self.accum
        return self._compiled

    def host_to_global(self, host_batch):
        """This host's numpy batch → global arrays split like the step expects."""
        return parr.host_to_global(host_batch, self.mesh, self.rules)

    def empty_metrics(self):
        return jax.device_put(self.metric_collection.empty(), self.replicated)

    def step(self, state, batch, macc):
        return self._compiled(state, batch, macc)


class _Preemption:
    """SIGTERM → save and stop. Multi-process runs use JAX's preemption sync point (all hosts agree)."""

    def __init__(self):
        self.flag = False
        self.distributed = jax.process_count() > 1
        self._old = None
        if not self.distributed and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        log.warning("SIGTERM received: saving a checkpoint and stopping")
        self.flag = True

    def reached(self, step: int) -> bool:
        if self.distributed:
            try:
                from jax.experimental import multihost_utils

                return bool(multihost_utils.reached_preemption_sync_point(step))
            except Exception:
                return False
        return self.flag

    def close(self):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class _NonfiniteRun:
    """Counts the current run of consecutive steps skipped by the NaN guard.

    Each step's skip counter is read one step late, from a copy (the state itself is donated to
    the next step), so that the host never waits for the device; `sync` catches up (it blocks).
    """

    def __init__(self, limit: int, skipped, checkpointer: Checkpointer):
        self.limit, self.length, self.step, self.checkpointer = limit, 0, 0, checkpointer
        self._last = int(jax.device_get(skipped))
        self._pending = None

    def after_step(self, step: int, state: TrainState) -> None:
        self.sync()
        self._pending = (step, jnp.copy(state.skipped))

    def sync(self) -> None:
        if self._pending is None:
            return
        self.step, skipped = self._pending[0], int(jax.device_get(self._pending[1]))
        self._pending = None
        self.length = self.length + 1 if skipped > self._last else 0
        self._last = skipped
        if self.limit and self.length >= self.limit:
            raise TrainingDiverged(self.message())

    def message(self) -> str:
        first, kept = self.step - self.length + 1, self.checkpointer.latest_step()
        kept = "no checkpoint was written" if kept is None else f"the last checkpoint is step {kept}"
        return (f"training diverged at step {self.step}: {self.length} consecutive steps "
                f"({first}-{self.step}) had a non-finite loss or gradient "
                f"(train.max_nonfinite_steps={self.limit}); {kept}; lower optimizer.learning_rate "
                "or check the data")


def _flatten_config(d: dict, prefix="") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}` (the hyper-parameters TensorBoard shows)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def enable_compilation_cache(path: str | None) -> str | None:
    """Point JAX's persistent compilation cache at `path` (expanded; "" = leave it off) unless
    JAX already has a cache directory (the JAX_COMPILATION_CACHE_DIR environment variable, or
    an earlier call). Returns the directory in use, or None."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if not path:
        return None
    path = os.path.expanduser(os.fspath(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def train(task, config, workdir: str | os.PathLike, *, mesh=None,
          hooks: Iterable[Callable[[int, "TrainContext"], None]] = ()) -> TrainResult:
    """Train `task` as configured, in `workdir` (resuming from its newest good checkpoint).

    `hooks`: extra callables `hook(step, ctx)` run after every step (ctx.state, ctx.checkpointer…).
    Returns when `train.num_steps` is reached or after a SIGTERM-triggered save (`preempted=True`).
    """
    initialize_distributed()
    config.lock()   # nothing may add a field from here on (get_task locks it already)
    cache_dir = enable_compilation_cache(config.train.compilation_cache_dir)
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(task, config, mesh)
    tc, cc = config.train, config.checkpoint
    pi, pc = jax.process_index(), jax.process_count()
    per_host = trainer.global_batch // pc
    data_iter = task.create_train_iterator(config, batch_size=per_host, process_index=pi, process_count=pc)
    ckpt = Checkpointer(workdir / "checkpoints", cc)
    run_meta = {"num_processes": pc, "global_batch_size": trainer.global_batch,
                "grad_accum_steps": trainer.accum, "task": getattr(task, "name", type(task).__name__)}
    restored = ckpt.restore(trainer.abstract_state, data_iter, expected_meta=run_meta)
    if restored is not None:
        step, state, _ = restored
        log.info("resumed from %s at step %d", ckpt.directory, step)
    else:
        state = trainer.init_state(int(config.seed))
        step = 0
        if tc.init_from.workdir:
            state = trainer.apply_init_from(state, tc.init_from)
    if pi == 0:   # what inference and export need to rebuild the model from this workdir
        write_text_atomic(workdir / "config.json", config.to_json_best_effort(indent=2))
    writer = tm.create_writer(workdir)
    if step == 0:
        writer.write_hparams(_flatten_config(config.to_dict()))
    ctx = TrainContext(trainer=trainer, state=state, checkpointer=ckpt, workdir=workdir, data_iter=data_iter)
    actions = [periodic_actions.ReportProgress(
        num_train_steps=trainer.num_steps, writer=writer,
        every_secs=float(tc.progress_every_secs))]
    if tc.profile and pi == 0:
        actions.append(periodic_actions.Profile(
            logdir=os.fspath(workdir), num_profile_steps=int(tc.profile_num_steps),
            first_profile=int(tc.profile_first_step)))
    log_every = max(1, int(tc.log_every))
    eval_every = int(tc.eval_every)
    ckpt_every = max(1, int(cc.every_steps))
    eval_fn = getattr(task, "eval_fn", None)
    peak = tm.peak_flops_per_device()
    preemption = _Preemption()
    nonfinite = _NonfiniteRun(int(tc.max_nonfinite_steps), state.skipped, ckpt)
    save_due = False
    last_scalars: dict[str, float] = {}
    ckpt_metrics: dict[str, float] = {}
    preempted = False
    macc = None
    log.info("training %s: steps %d→%d, global batch %d, mesh %s, %d process(es)", run_meta["task"], step,
             trainer.num_steps, trainer.global_batch, mesh_summary(trainer.mesh), pc)
    try:
        window_t, window_steps, first_step_seconds = None, 0, None
        while step < trainer.num_steps:
            try:
                host_batch = next(data_iter)
            except StopIteration:
                log.warning("the training iterator ran out at step %d; stopping", step)
                break
            batch = trainer.host_to_global(host_batch)
            first = macc is None
            if first:
                trainer.compile(batch)
                macc = trainer.empty_metrics()
                log.info("AOT compile of the train step: %.1fs (trace+lower %.1fs), %s FLOPs/step/"
                         "device, compilation cache %s", trainer.compile_seconds,
                         trainer.lower_seconds,
                         f"{trainer.flops_per_step:.3g}" if trainer.flops_per_step else "unknown",
                         cache_dir or "off")
                first_t = time.perf_counter()
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                state, macc = trainer.step(state, batch, macc)
            step += 1
            if first:   # one-off costs stay out of the steady-state steps/s
                jax.block_until_ready(state)
                first_step_seconds = time.perf_counter() - first_t
                window_t, window_steps = time.perf_counter(), 0
            else:
                window_steps += 1
            ctx.state = state
            nonfinite.after_step(step, state)
            for action in actions:
                action(step)
            if step % log_every == 0 or step == trainer.num_steps:
                scalars = tm.collection_to_floats(macc, "train/")
                macc = trainer.empty_metrics()
                scalars["train/skipped_steps_total"] = float(jax.device_get(state.skipped))
                if first_step_seconds is not None:
                    scalars["perf/compile_seconds"] = trainer.compile_seconds
                    scalars["perf/first_step_seconds"] = first_step_seconds
                    first_step_seconds = None
                if window_steps:     # none yet when a log falls on the first step
                    jax.block_until_ready(state)
                    sps = window_steps / (time.perf_counter() - window_t)
                    scalars["perf/steps_per_sec"] = sps
                    scalars["perf/examples_per_sec"] = sps * trainer.global_batch
                    if peak and trainer.flops_per_step:
                        scalars["perf/mfu"] = trainer.flops_per_step * sps / peak
                writer.write_scalars(step, scalars)
                last_scalars = scalars
                ckpt_metrics.update(scalars)
                window_t, window_steps = time.perf_counter(), 0
            if eval_every and eval_fn is not None and step % eval_every == 0:
                with actions[0].timed("eval"):
                    ev = eval_fn(trainer.model(state, use_ema=bool(tc.eval_use_ema)), step)
                ev = {f"eval/{k}": float(v) for k, v in ev.items()}
                writer.write_scalars(step, ev)
                ckpt_metrics.update(ev)
                window_t = time.perf_counter()   # keep eval time out of steps/s
            for hook in hooks:
                hook(step, ctx)
            preempted = preemption.reached(step)
            final = preempted or step == trainer.num_steps
            save_due = save_due or step % ckpt_every == 0
            if save_due or final:
                nonfinite.sync()
                if nonfinite.length and not final:
                    log.warning("step %d: not saving a checkpoint after %d non-finite step(s); "
                                "waiting for a finite one", step, nonfinite.length)
                else:
                    ckpt.save(step, state, data_iter, run_meta, metrics=ckpt_metrics or None,
                              force=preempted)
                    save_due = False
            if preempted:
                log.warning("preempted: checkpoint at step %d written, stopping", step)
                break
    finally:
        preemption.close()
        ckpt.close()
        writer.flush()
        writer.close()
    finalize = getattr(task, "finalize", None)
    if finalize is not None and not preempted and step >= trainer.num_steps:
        finalize(trainer.model(state, use_ema=True), config, workdir)
    return TrainResult(state=state, step=step, preempted=preempted, last_metrics=last_scalars, workdir=workdir)


@dataclasses.dataclass
class TrainContext:
    trainer: Trainer
    state: TrainState
    checkpointer: Checkpointer
    workdir: Path
    data_iter: Any
