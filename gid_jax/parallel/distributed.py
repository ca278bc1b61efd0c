"""Multi-host start-up: `initialize_distributed()` joins this process to the others, or does nothing.

Call it first thing in a training process, before anything touches a JAX device. Where the
settings come from, first match wins:

1. `GID_COORDINATOR_ADDRESS` (host:port), `GID_NUM_PROCESSES`, `GID_PROCESS_ID`
   (optional `GID_LOCAL_DEVICE_IDS`, comma separated) — our own launchers (launch/) set these;
2. `JAX_COORDINATOR_ADDRESS` + `JAX_NUM_PROCESSES` + `JAX_PROCESS_ID` (standard JAX names);
3. SLURM (`SLURM_NTASKS` > 1): process id `SLURM_PROCID`, count `SLURM_NTASKS`, coordinator the
   first host of `SLURM_STEP_NODELIST`/`SLURM_JOB_NODELIST` (else `SLURM_LAUNCH_NODE_IPADDR`),
   port `GID_COORDINATOR_PORT` (default 12321);
4. a multi-host Cloud TPU slice (`TPU_WORKER_HOSTNAMES` with several hosts, or
   `MEGASCALE_COORDINATOR_ADDRESS`), or `JAX_COORDINATOR_ADDRESS` alone: JAX auto-detects
   everything (`jax.distributed.initialize()` with no arguments);
5. otherwise: a single process, nothing to do.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

log = logging.getLogger(__name__)

DEFAULT_COORDINATOR_PORT = 12321
_INITIALIZED = False


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise ValueError(f"environment variable {name}={env.get(name)!r} must be an integer") from None


def first_slurm_host(nodelist: str) -> str:
    """First host name of a SLURM node list: 'gpu[03-05,09],cpu1' → 'gpu03'."""
    nodelist = nodelist.strip()
    m = re.match(r"^([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if not m:
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, bracket = m.group(1), m.group(3)
    if bracket is None:
        return prefix
    first = bracket.split(",")[0].split("-")[0]
    return prefix + first


def resolve_distributed_config(env: Mapping[str, str] | None = None) -> dict | None:
    """Arguments for `jax.distributed.initialize`, `{}` for auto-detection, or None (single process)."""
    env = os.environ if env is None else env

    def local_ids(name):
        v = env.get(name)
        return None if not v else [int(x) for x in v.split(",") if x.strip()]

    if env.get("GID_COORDINATOR_ADDRESS") or env.get("GID_NUM_PROCESSES"):
        n = _int(env, "GID_NUM_PROCESSES")
        if n <= 1:
            return None
        if not env.get("GID_COORDINATOR_ADDRESS"):
            raise ValueError("GID_NUM_PROCESSES > 1 needs GID_COORDINATOR_ADDRESS (host:port)")
        cfg = dict(coordinator_address=env["GID_COORDINATOR_ADDRESS"], num_processes=n,
                   process_id=_int(env, "GID_PROCESS_ID"))
        if local_ids("GID_LOCAL_DEVICE_IDS") is not None:
            cfg["local_device_ids"] = local_ids("GID_LOCAL_DEVICE_IDS")
        return _check(cfg)
    if env.get("JAX_COORDINATOR_ADDRESS") and env.get("JAX_NUM_PROCESSES"):
        n = _int(env, "JAX_NUM_PROCESSES")
        if n <= 1:
            return None
        cfg = dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"], num_processes=n,
                   process_id=_int(env, "JAX_PROCESS_ID"))
        if local_ids("JAX_LOCAL_DEVICE_IDS") is not None:
            cfg["local_device_ids"] = local_ids("JAX_LOCAL_DEVICE_IDS")
        return _check(cfg)
    if env.get("SLURM_NTASKS") and _int(env, "SLURM_NTASKS") > 1 and env.get("SLURM_PROCID") is not None:
        port = int(env.get("GID_COORDINATOR_PORT", DEFAULT_COORDINATOR_PORT))
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
        if nodelist:
            host = first_slurm_host(nodelist)
        elif env.get("SLURM_LAUNCH_NODE_IPADDR"):
            host = env["SLURM_LAUNCH_NODE_IPADDR"]
        else:
            raise ValueError("SLURM run with SLURM_NTASKS > 1 but neither SLURM_JOB_NODELIST nor "
                             "SLURM_LAUNCH_NODE_IPADDR is set; set GID_COORDINATOR_ADDRESS")
        cfg = dict(coordinator_address=f"{host}:{port}", num_processes=_int(env, "SLURM_NTASKS"),
                   process_id=_int(env, "SLURM_PROCID"))
        if env.get("SLURM_LOCALID") is not None and env.get("GID_ONE_DEVICE_PER_TASK") == "1":
            cfg["local_device_ids"] = [_int(env, "SLURM_LOCALID")]
        return _check(cfg)
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS") or env.get("JAX_COORDINATOR_ADDRESS"):
        return {}
    return None


def _check(cfg: dict) -> dict:
    if not 0 <= cfg["process_id"] < cfg["num_processes"]:
        raise ValueError(f"process id {cfg['process_id']} is outside [0, {cfg['num_processes']})")
    return cfg


def initialize_distributed(env: Mapping[str, str] | None = None) -> bool:
    """Join the multi-host run described by the environment; True if this is a multi-process run.

    Idempotent; a no-op (False) for single-process runs. Must run before JAX touches a device.
    """
    global _INITIALIZED
    if _INITIALIZED:
        return True
    cfg = resolve_distributed_config(env)
    if cfg is None:
        return False
    import jax

    log.info("jax.distributed.initialize(%s)", cfg or "auto-detect")
    try:
        jax.distributed.initialize(**cfg)
    except RuntimeError as e:
        if "already" not in str(e).lower():
            raise RuntimeError(f"jax.distributed.initialize({cfg}) failed: {e}") from e
    _INITIALIZED = True
    return True


def is_primary() -> bool:
    import jax

    return jax.process_index() == 0


def resolve_process(process_index: int | None = None, process_count: int | None = None) -> tuple[int, int]:
    """`(process_index, process_count)`, each defaulting to JAX's, checked for consistency."""
    import jax

    if process_index is None or process_count is None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return int(process_index), int(process_count)
