#!/usr/bin/env python3
"""Run N cooperating processes of one command on this machine, each with D fake CPU devices.

    python launch/local.py --num-processes 2 --devices-per-process 2 -- \\
        .venv/bin/gid train --config configs/toy.py:tiny --workdir /tmp/toy2

Every process gets the environment `gid_jax.parallel.initialize_distributed()` reads:

    GID_COORDINATOR_ADDRESS=127.0.0.1:PORT   process 0 hosts the coordinator there
    GID_NUM_PROCESSES=N                      how many processes join
    GID_PROCESS_ID=i                         this one's rank, 0..N-1
    XLA_FLAGS=--xla_force_host_platform_device_count=D   D fake CPU devices per process
    JAX_PLATFORMS=cpu

so the job sees N*D devices across N processes: the same code path as a real multi-host run,
without the hosts. Output lines come back prefixed `[p0] `, `[p1] `, ...; if one process fails the
others are stopped, and the exit status is non-zero (the first failure's status). `--dry-run`
prints the commands, with their environment, instead of running them.

Standard library only: run it as a script or as `python -m launch.local` from the repo root.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def xla_flags(existing: str | None, devices: int) -> str:
    """`existing` XLA_FLAGS with the fake-device count set to `devices` (any old count replaced)."""
    kept = [f for f in (existing or "").split() if not f.startswith(_DEVICE_FLAG)]
    return " ".join(kept + [f"{_DEVICE_FLAG}={devices}"])


def process_env(process_id: int, num_processes: int, devices: int, address: str,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables set for process `process_id` (only those; merge over `os.environ` to run)."""
    base = os.environ if base is None else base
    return {
        "GID_COORDINATOR_ADDRESS": address,
        "GID_NUM_PROCESSES": str(num_processes),
        "GID_PROCESS_ID": str(process_id),
        "XLA_FLAGS": xla_flags(base.get("XLA_FLAGS"), devices),
        "JAX_PLATFORMS": "cpu",
    }


def render(env: dict[str, str], command: list[str]) -> str:
    """One shell line that reproduces the run of `command` under `env`."""
    assigns = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    return " ".join(assigns + [shlex.join(command)])


def _pump(stream, prefix: str, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            sys.stdout.flush()
    stream.close()


class _Terminated(Exception):
    """This launcher got SIGTERM."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM every live process group, then SIGKILL what is still alive after `grace` seconds."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(command: list[str], num_processes: int, devices: int, address: str,
           timeout: float | None = None) -> int:
    """Run `command` N times with the distributed environment; the combined exit status."""
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    try:
        for i in range(num_processes):
            env = dict(os.environ, **process_env(i, num_processes, devices, address))
            # Own session: stopping a process also stops whatever it started.
            p = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
            procs.append(p)
            t = threading.Thread(target=_pump, args=(p.stdout, f"[p{i}] ", lock), daemon=True)
            t.start()
            pumps.append(t)
    except OSError as e:
        print(f"local.py: cannot start {command[0]!r}: {e}", file=sys.stderr)
        _stop(procs)
        return 127

    status = 0
    start = time.monotonic()
    # The children run in their own sessions, so signals to this launcher do not reach them:
    # pass SIGTERM on (Ctrl-C arrives here as KeyboardInterrupt).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                print(f"local.py: process {i} exited with status {status}; stopping the others",
                      file=sys.stderr)
                _stop(procs)
                break
            if all(c == 0 for c in codes):
                break
            if timeout is not None and time.monotonic() - start > timeout:
                print(f"local.py: timed out after {timeout:g} s; stopping all processes", file=sys.stderr)
                _stop(procs)
                status = 124
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(procs)
        status = 130
    except _Terminated:
        _stop(procs)
        status = 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for t in pumps:
        t.join(timeout=5)
    if status < 0:  # killed by a signal: report it the way shells do
        status = 128 - status
    return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" in argv:
        cut = argv.index("--")
        own, command = argv[:cut], argv[cut + 1:]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(
        prog="launch/local.py",
        description="Run N processes of a command on this machine as one multi-process JAX job "
                    "(fake CPU devices, coordinator on 127.0.0.1).",
        epilog="example: python launch/local.py --num-processes 2 --devices-per-process 2 -- "
               ".venv/bin/gid train --config configs/toy.py:tiny --workdir /tmp/toy2",
        usage="%(prog)s [-h] --num-processes N [--devices-per-process D] [--port P] [--timeout S] "
              "[--dry-run] -- COMMAND [ARG ...]")
    parser.add_argument("--num-processes", "-n", type=int, required=True, metavar="N",
                        help="how many processes to start (GID_NUM_PROCESSES)")
    parser.add_argument("--devices-per-process", "-d", type=int, default=1, metavar="D",
                        help="fake CPU devices per process (XLA_FLAGS); default 1")
    parser.add_argument("--port", type=int, default=0, metavar="P",
                        help="coordinator port on 127.0.0.1; default: a free one")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="stop everything after S seconds (exit status 124); default: none")
    parser.add_argument("--dry-run", action="store_true",
                        help="print each process's command with its environment; run nothing")
    args = parser.parse_args(own)
    if not command:
        parser.error("no command: put it after '--', e.g. -- .venv/bin/gid train ...")
    if args.num_processes < 1:
        parser.error("--num-processes must be >= 1")
    if args.devices_per_process < 1:
        parser.error("--devices-per-process must be >= 1")
    if not 0 <= args.port < 65536:
        parser.error("--port must be in [0, 65535]")
    args.command = command
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    port = args.port or free_port()
    address = f"127.0.0.1:{port}"
    if args.dry_run:
        for i in range(args.num_processes):
            env = process_env(i, args.num_processes, args.devices_per_process, address)
            print(render(env, args.command))
        return 0
    return launch(args.command, args.num_processes, args.devices_per_process, address,
                  timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
