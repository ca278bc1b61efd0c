"""Optax optimiser and learning-rate schedule from `config.optimizer`; EMA of parameters."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def _decay_steps(opt_cfg, num_steps: int) -> int:
    d = int(opt_cfg.decay_steps)
    return num_steps if d < 0 else d


def create_learning_rate_schedule(opt_cfg, num_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 over `warmup_steps`, then constant / cosine / linear decay."""
    lr = float(opt_cfg.learning_rate)
    warmup = int(opt_cfg.warmup_steps)
    kind = opt_cfg.schedule
    end = lr * float(opt_cfg.end_lr_factor)
    total = max(_decay_steps(opt_cfg, num_steps), warmup + 1)
    if kind == "constant":
        after = optax.constant_schedule(lr)
    elif kind == "cosine":
        after = optax.cosine_decay_schedule(lr, total - warmup, alpha=end / lr if lr else 0.0)
    elif kind == "linear":
        after = optax.linear_schedule(lr, end, total - warmup)
    else:
        raise ValueError(f"optimizer.schedule={kind!r}: expected 'constant', 'cosine' or 'linear'")
    if warmup <= 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def create_optimizer(opt_cfg, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule). Adam (AdamW when weight_decay > 0) after global-norm clipping."""
    schedule = create_learning_rate_schedule(opt_cfg, num_steps)
    name = opt_cfg.name.lower()
    kw = dict(b1=float(opt_cfg.b1), b2=float(opt_cfg.b2), eps=float(opt_cfg.eps))
    wd = float(opt_cfg.weight_decay)
    if name in ("adam", "adamw"):
        opt = optax.adamw(schedule, weight_decay=wd, **kw) if (wd > 0 or name == "adamw") else optax.adam(schedule, **kw)
    elif name == "sgd":
        opt = optax.sgd(schedule, momentum=float(opt_cfg.momentum) or None)
    else:
        raise ValueError(f"optimizer.name={name!r}: expected 'adam', 'adamw' or 'sgd'")
    clip = float(opt_cfg.grad_clip_norm)
    parts = ([optax.clip_by_global_norm(clip)] if clip > 0 else []) + [opt]
    return optax.chain(*parts), schedule


def ema_update(ema: Any, params: Any, decay: float | jax.Array) -> Any:
    """ema ← decay · ema + (1 − decay) · params, leaf by leaf (in the EMA's dtype)."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p.astype(e.dtype)).astype(e.dtype),
                        ema, params)


def schedule_step(opt_state: Any) -> jax.Array | None:
    """The optimiser's own step counter (what the schedule sees), if it has one."""
    def has_count(x):
        return "count" in getattr(x, "_fields", ())

    counts = [x.count for x in jax.tree.leaves(opt_state, is_leaf=has_count) if has_count(x)]
    return jnp.asarray(counts[0]) if counts else None
