#!/usr/bin/env bash
# Plain multi-host launch: run this on every host, each with its own --process-id.
#
#   host 0:  launch/multihost.sh --coordinator 10.0.0.1:12321 --num-processes 2 --process-id 0 -- \
#                .venv/bin/gid train --config configs/toy.py:tiny --workdir /shared/runs/toy
#   host 1:  launch/multihost.sh --coordinator 10.0.0.1:12321 --num-processes 2 --process-id 1 -- \
#                .venv/bin/gid train --config configs/toy.py:tiny --workdir /shared/runs/toy
#
# It sets GID_COORDINATOR_ADDRESS, GID_NUM_PROCESSES, GID_PROCESS_ID (and GID_LOCAL_DEVICE_IDS
# with --local-device-ids) and execs the command; --dry-run prints it instead. See launch/README.md.
set -euo pipefail

PROG=${0##*/}

usage() {
  cat <<EOF
usage: $PROG --coordinator HOST:PORT --num-processes N --process-id I
             [--local-device-ids IDS] [--dry-run] -- COMMAND [ARG...]

Run COMMAND as process I of an N-process JAX job. Start it on every host (any order; they wait
for each other), with the same --coordinator and --num-processes and a different --process-id.
Process 0 hosts the coordinator, so HOST must be process 0's host, reachable from all the others.

  --coordinator HOST:PORT  GID_COORDINATOR_ADDRESS: process 0's host and a free TCP port
  --num-processes N        GID_NUM_PROCESSES: how many processes join (usually one per host)
  --process-id I           GID_PROCESS_ID: this process's rank, 0 .. N-1
  --local-device-ids IDS   GID_LOCAL_DEVICE_IDS: comma-separated accelerators this process uses
                           (for several processes per host); default: all of the host's
  --dry-run                print the command with its environment; run nothing
  -h, --help               this help

example:
  $PROG --coordinator 10.0.0.1:12321 --num-processes 2 --process-id 0 -- \\
      .venv/bin/gid train --config configs/toy.py:tiny --workdir /shared/runs/toy
EOF
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

coordinator="" num="" pid="" local_ids="" dry_run=0
command=()
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; command=("$@"); break ;;
    --*=*)
      opt=${1%%=*} val=${1#*=}
      shift
      set -- "$opt" "$val" "$@"
      ;;
    --coordinator|--num-processes|--process-id|--local-device-ids)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --coordinator) coordinator=$2 ;; --num-processes) num=$2 ;;
        --process-id) pid=$2 ;; --local-device-ids) local_ids=$2 ;;
      esac
      shift 2 ;;
    *) die "unknown argument '$1' (the command goes after '--'; see --help)" ;;
  esac
done

[[ -n $coordinator ]] || die "--coordinator HOST:PORT is required"
if ! [[ $coordinator =~ ^[^[:space:]]+:([0-9]{1,5})$ ]] || ((10#${BASH_REMATCH[1]} == 0 || 10#${BASH_REMATCH[1]} > 65535)); then
  die "--coordinator '$coordinator' must look like HOST:PORT (e.g. 10.0.0.1:12321)"
fi
[[ $num =~ ^[1-9][0-9]*$ ]] || die "--num-processes '$num' must be a positive integer"
[[ $pid =~ ^[0-9]+$ ]] || die "--process-id '$pid' must be an integer in [0, $num)"
((10#$pid < 10#$num)) || die "--process-id $pid must be in [0, $num)"
[[ -z $local_ids || $local_ids =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--local-device-ids '$local_ids' must look like 0,1,2"
((${#command[@]})) || die "no command: put it after '--', e.g. -- .venv/bin/gid train ..."

vars=("GID_COORDINATOR_ADDRESS=$coordinator" "GID_NUM_PROCESSES=$((10#$num))" "GID_PROCESS_ID=$((10#$pid))")
[[ -z $local_ids ]] || vars+=("GID_LOCAL_DEVICE_IDS=$local_ids")

if ((dry_run)); then
  line=""
  for v in "${vars[@]}"; do
    line+="${v%%=*}=$(quote "${v#*=}") "  # NAME=value, the value quoted: still an assignment
  done
  printf '%s%s\n' "$line" "$(quote "${command[@]}")"
  exit 0
fi
for v in "${vars[@]}"; do
  export "${v?}"
done
exec "${command[@]}"
