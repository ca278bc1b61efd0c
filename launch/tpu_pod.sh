#!/usr/bin/env bash
# Create a Cloud TPU pod slice, copy this repository to every worker, install it, train, tear down.
#
#   launch/tpu_pod.sh create --name gid-v4 --zone us-central2-b --type v4-32 --version tpu-ubuntu2204-base
#   launch/tpu_pod.sh setup  --name gid-v4 --zone us-central2-b
#   launch/tpu_pod.sh run    --name gid-v4 --zone us-central2-b -- --config configs/toy.py:tiny --workdir /tmp/toy
#   launch/tpu_pod.sh delete --name gid-v4 --zone us-central2-b
#
# Every worker of a slice runs the same `gid train`; jax.distributed auto-detects the slice
# (gid_jax/parallel/distributed.py), so no coordinator settings are needed. --dry-run prints the
# exact commands instead of running them. See launch/README.md.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
usage: $PROG SUBCOMMAND [options] [-- GID_TRAIN_ARGS...]

Manage a Cloud TPU VM (a pod slice or a single host) with gcloud and train on all its workers.

subcommands:
  create    gcloud compute tpus tpu-vm create (needs --type and --version)
  setup     copy the repository to ~/REMOTE_DIR on every worker (tpu-vm scp --recurse --worker=all)
            and install it there in a virtual environment, with jax[tpu]
  run       on every worker at once: cd ~/REMOTE_DIR && .venv/bin/gid train GID_TRAIN_ARGS...
  status    gcloud compute tpus tpu-vm describe
  stop      gcloud compute tpus tpu-vm stop   (not every slice type can be stopped: delete it then)
  start     gcloud compute tpus tpu-vm start
  delete    gcloud compute tpus tpu-vm delete --quiet

options (defaults from the environment variable in brackets):
  --name NAME        TPU name                         [GID_TPU_NAME, else gid-tpu]
  --zone ZONE        zone, e.g. us-central2-b         [GID_TPU_ZONE; required]
  --type TYPE        accelerator type, e.g. v4-32      [GID_TPU_TYPE, else v4-32]
  --version VERSION  TPU runtime (software) version    [GID_TPU_VERSION, else tpu-ubuntu2204-base]
  --project PROJECT  Google Cloud project              [GID_TPU_PROJECT, else gcloud's default]
  --spot             create: a Spot (preemptible) slice
  --repo DIR         local repository to copy          [the one holding this script]
  --remote-dir DIR   directory under ~ on the workers [gid-jax]
  --python PYTHON    interpreter that creates the workers' venv (>= 3.11) [python3]
  --use-make         setup: install with 'make install' instead of pip directly
  --dry-run          print the exact commands, run nothing
  -h, --help         this help

examples:
  $PROG create --name gid-v4 --zone us-central2-b --type v4-32 --version tpu-ubuntu2204-base
  $PROG setup  --name gid-v4 --zone us-central2-b
  $PROG run    --name gid-v4 --zone us-central2-b -- --config configs/toy.py:tiny --workdir /tmp/toy
  $PROG delete --name gid-v4 --zone us-central2-b
EOF
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DRY_RUN=0
run_cmd() {
  if ((DRY_RUN)); then
    quote "$@"
  else
    printf '+ %s\n' "$(quote "$@")" >&2
    "$@"
  fi
}

sub=""
name=${GID_TPU_NAME:-gid-tpu}
zone=${GID_TPU_ZONE:-}
type=${GID_TPU_TYPE:-v4-32}
version=${GID_TPU_VERSION:-tpu-ubuntu2204-base}
project=${GID_TPU_PROJECT:-}
spot=0
repo=$(cd "$SCRIPT_DIR/.." && pwd)
remote_dir=gid-jax
python=python3
use_make=0
train_args=()

while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --spot) spot=1; shift ;;
    --use-make) use_make=1; shift ;;
    --name|--zone|--type|--version|--project|--repo|--remote-dir|--python)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --name) name=$2 ;; --zone) zone=$2 ;; --type) type=$2 ;; --version) version=$2 ;;
        --project) project=$2 ;; --repo) repo=$2 ;; --remote-dir) remote_dir=$2 ;;
        --python) python=$2 ;;
      esac
      shift 2 ;;
    --name=*) name=${1#*=}; shift ;;
    --zone=*) zone=${1#*=}; shift ;;
    --type=*) type=${1#*=}; shift ;;
    --version=*) version=${1#*=}; shift ;;
    --project=*) project=${1#*=}; shift ;;
    --repo=*) repo=${1#*=}; shift ;;
    --remote-dir=*) remote_dir=${1#*=}; shift ;;
    --python=*) python=${1#*=}; shift ;;
    --) shift; train_args=("$@"); break ;;
    create|setup|run|status|stop|start|delete)
      [[ -z $sub ]] || die "two subcommands: '$sub' and '$1' (see --help)"
      sub=$1; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ -n $sub ]] || { usage >&2; exit 2; }
[[ -n $name ]] || die "--name is empty"
[[ -n $zone ]] || die "--zone is required (or set GID_TPU_ZONE)"
[[ $remote_dir =~ ^[A-Za-z0-9_.][A-Za-z0-9_./-]*$ ]] || die "--remote-dir '$remote_dir': use a plain relative path"
if ((${#train_args[@]})) && [[ $sub != run ]]; then
  die "arguments after '--' are for 'run' only"
fi

where=(--zone "$zone")
[[ -z $project ]] || where+=(--project "$project")
tpu=(gcloud compute tpus tpu-vm)

# The top-level entries of the repository that hold files git does not ignore (.venv/, runs/
# and other build output stay behind); without git, the entries a run needs.
repo_entries() {
  local entries=() e
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    while IFS= read -r e; do
      [[ -e $repo/$e ]] && entries+=("$repo/$e")
    done < <(git -C "$repo" ls-files --cached --others --exclude-standard | cut -d/ -f1 | sort -u)
  else
    for e in pyproject.toml README.md Makefile constraints.txt gid_jax data_pipelines launch; do
      [[ -e $repo/$e ]] && entries+=("$repo/$e")
    done
  fi
  ((${#entries[@]})) || die "nothing to copy from $repo"
  printf '%s\n' "${entries[@]}"
}

case $sub in
  create)
    cmd=("${tpu[@]}" create "$name" "${where[@]}" --accelerator-type "$type" --version "$version")
    ((spot)) && cmd+=(--spot)
    run_cmd "${cmd[@]}"
    ;;
  setup)
    [[ -f $repo/pyproject.toml ]] || die "--repo $repo holds no pyproject.toml"
    mapfile -t sources < <(repo_entries)
    if ((use_make)); then
      install="make install PYTHON=$python && .venv/bin/pip install -q -c constraints.txt 'jax[tpu]'"
    else
      install="$python -m venv .venv && .venv/bin/pip install -q --upgrade pip"
      install+=" && .venv/bin/pip install -q -c constraints.txt -e . 'jax[tpu]'"
    fi
    run_cmd "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command "mkdir -p ~/$remote_dir"
    run_cmd "${tpu[@]}" scp --recurse "${sources[@]}" "$name:~/$remote_dir/" "${where[@]}" --worker=all
    run_cmd "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
      --command "cd ~/$remote_dir && $install && .venv/bin/gid train --help >/dev/null && echo gid-jax installed in ~/$remote_dir"
    ;;
  run)
    ((${#train_args[@]})) || die "run needs the gid train arguments after '--', e.g. -- --config configs/toy.py:tiny --workdir /tmp/toy"
    run_cmd "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
      --command "cd ~/$remote_dir && .venv/bin/gid train $(quote "${train_args[@]}")"
    ;;
  status) run_cmd "${tpu[@]}" describe "$name" "${where[@]}" ;;
  stop) run_cmd "${tpu[@]}" stop "$name" "${where[@]}" ;;
  start) run_cmd "${tpu[@]}" start "$name" "${where[@]}" ;;
  delete) run_cmd "${tpu[@]}" delete "$name" "${where[@]}" --quiet ;;
esac
