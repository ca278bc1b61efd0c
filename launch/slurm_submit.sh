#!/usr/bin/env bash
# Submit launch/slurm_gpu.sbatch with the node/GPU/partition/time options on the command line.
#
#   launch/slurm_submit.sh --nodes 4 --gpus-per-node 8 --partition gpu --time 48:00:00 -- \
#       --config configs/toy.py:tiny --workdir /shared/runs/toy
#
# --dry-run prints the exact sbatch command, then what the batch script would set up inside the
# job for a sample node list (--sample-nodelist, default gpu[01-NN]). See launch/README.md.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(dirname "${BASH_SOURCE[0]}")
SBATCH_SCRIPT=$SCRIPT_DIR/slurm_gpu.sbatch

usage() {
  cat <<EOF
usage: $PROG [options] [--dry-run] -- GID_TRAIN_ARGS...

Submit a multi-node GPU training job: sbatch $SBATCH_SCRIPT GID_TRAIN_ARGS...
(one task per node; each task drives all the GPUs of its node).

options (left out: the #SBATCH default of the batch script, or the cluster's):
  --nodes N            nodes (= processes)                         [2]
  --gpus-per-node G    GPUs per node                               [8]
  --cpus-per-task C    CPU cores per task (per node)               [32]
  --partition P        partition (queue)
  --time T             time limit, e.g. 24:00:00                   [24:00:00]
  --account A          account to charge
  --job-name J         job name                                    [gid-train]
  --port P             coordinator port (GID_COORDINATOR_PORT)     [20000 + job id % 20000]
  --sbatch-arg ARG     one more sbatch option, verbatim (repeatable), e.g. --sbatch-arg=--exclusive
  --sample-nodelist L  --dry-run: the node list to render the job's environment for [gpu[01-NN]]
  --dry-run            print the sbatch command and the job's environment logic; submit nothing
  -h, --help           this help

example:
  $PROG --nodes 2 --gpus-per-node 8 --partition gpu --time 12:00:00 -- \\
      --config configs/toy.py:tiny --workdir /shared/runs/toy
EOF
}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

nodes="" gpus="" cpus="" partition="" time_limit="" account="" job_name="" port="" sample=""
extra=()
dry_run=0
train_args=()
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; train_args=("$@"); break ;;
    --*=*)
      opt=${1%%=*} val=${1#*=}
      shift
      set -- "$opt" "$val" "$@"
      ;;
    --nodes|--gpus-per-node|--cpus-per-task|--partition|--time|--account|--job-name|--port|--sbatch-arg|--sample-nodelist)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --nodes) nodes=$2 ;; --gpus-per-node) gpus=$2 ;; --cpus-per-task) cpus=$2 ;;
        --partition) partition=$2 ;; --time) time_limit=$2 ;; --account) account=$2 ;;
        --job-name) job_name=$2 ;; --port) port=$2 ;; --sbatch-arg) extra+=("$2") ;;
        --sample-nodelist) sample=$2 ;;
      esac
      shift 2 ;;
    *) die "unknown argument '$1' (the gid train arguments go after '--'; see --help)" ;;
  esac
done

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
[[ -z $nodes ]] || is_count "$nodes" || die "--nodes '$nodes' is not a positive integer"
[[ -z $gpus ]] || is_count "$gpus" || die "--gpus-per-node '$gpus' is not a positive integer"
[[ -z $cpus ]] || is_count "$cpus" || die "--cpus-per-task '$cpus' is not a positive integer"
[[ -z $port ]] || { is_count "$port" && ((port < 65536)); } || die "--port '$port' is not a port number"
((${#train_args[@]})) || die "no gid train arguments: put them after '--', e.g. -- --config configs/toy.py:tiny --workdir DIR"

cmd=()
[[ -z $port ]] || cmd+=(env "GID_COORDINATOR_PORT=$port")
cmd+=(sbatch)
[[ -z $nodes ]] || cmd+=("--nodes=$nodes")
cmd+=(--ntasks-per-node=1)
[[ -z $gpus ]] || cmd+=("--gpus-per-node=$gpus")
[[ -z $cpus ]] || cmd+=("--cpus-per-task=$cpus")
[[ -z $partition ]] || cmd+=("--partition=$partition")
[[ -z $time_limit ]] || cmd+=("--time=$time_limit")
[[ -z $account ]] || cmd+=("--account=$account")
[[ -z $job_name ]] || cmd+=("--job-name=$job_name")
cmd+=("${extra[@]}" "$SBATCH_SCRIPT" "${train_args[@]}")

if ((dry_run)); then
  quote "${cmd[@]}"
  # The number of nodes the job will get: --nodes, else the batch script's #SBATCH --nodes.
  n=${nodes:-$(sed -n 's/^#SBATCH --nodes=\([0-9]*\).*/\1/p' "$SBATCH_SCRIPT" | sed -n 1p)}
  n=${n:-1}
  if [[ -z $sample ]]; then
    if ((n == 1)); then sample=gpu01; else sample=$(printf 'gpu[01-%02d]' "$n"); fi
  fi
  echo "# inside the job, for SLURM_JOB_NODELIST=$sample SLURM_NTASKS=$n SLURM_JOB_ID=12345:"
  env SLURM_JOB_NODELIST="$sample" SLURM_NTASKS="$n" SLURM_NNODES="$n" SLURM_JOB_ID=12345 \
      SLURM_SUBMIT_DIR="$PWD" GID_SLURM_DRY_RUN=1 ${port:+GID_COORDINATOR_PORT="$port"} \
      bash "$SBATCH_SCRIPT" "${train_args[@]}" | sed 's/^/#   /'
  exit 0
fi

command -v sbatch >/dev/null 2>&1 || die "sbatch not found: run this on a SLURM login node (or use --dry-run)"
printf '+ %s\n' "$(quote "${cmd[@]}")" >&2
exec "${cmd[@]}"
