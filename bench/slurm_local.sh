#!/usr/bin/env bash
# The README's Slurm array under a real Slurm, on this one machine, with faults. Run as root:
#   bash bench/slurm_local.sh                   (CONFIG=configs/slurm_check.yaml by default)
# 1. installs slurm-wlm and munge (apt-get) when absent; starts munged, slurmctld and slurmd (one node,
#    one partition that lets two tasks share a core, so two arrays overlap) and remembers their PIDs;
# 2. runs the config unsharded (study.sh, one job) in a copy of the tree: the reference;
# 3. in a second copy: two arrays of two tasks (slurm/study_array.sbatch) over the same folder, and
#    slurm/finish.sbatch after them (--dependency=afterok); cancels the task that trains the largest run
#    once it has a checkpoint, submits that array again, and the finish job again after it;
# 4. a task on a node without the envs: fails naming what is missing;
# 5. bench/slurm_compare.py: every run trained and scored once, by one task; the answers equal the
#    reference's row by row, the baselines to three decimals;
# then cancels its jobs and stops the daemons it started, by PID. Output: bench/results/slurm_local_<cpu kind>.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CONFIG=${CONFIG:-configs/slurm_check.yaml}
D=${FEWSHOT_SLURM_DIR:-/tmp/fewshot-slurm}
KIND=avx2  # as fewshot.devices.cpu_kind names it (before setup.sh has made the env that holds it)
for k in avx512f:avx512 avx512_bf16:avx512_bf16 amx_bf16:amx; do grep -q -w "${k%%:*}" /proc/cpuinfo && KIND=${k##*:}; done
OUT=$ROOT/bench/results/slurm_local_$KIND.txt  # one per CPU kind: the check must pass on each
mkdir -p "$ROOT/bench/results"
exec > >(tee "$OUT") 2>&1
say() { echo "[slurm_local $(date -u +%H:%M:%S)] $*"; }
die() { say "FAILED: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get, munged as the munge user, slurmd)"
say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
    "flags: $(grep -m1 -o -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | xargs || true) $(grep -q avx512f /proc/cpuinfo && echo avx512f || echo avx2)"
bash setup.sh | tail -1

# ---------------------------------------------------------------- install and start
t0=$SECONDS
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge with apt-get"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
say "slurm $(slurmd -V | cut -d' ' -f2), munge $(munged --version 2>&1 | head -1 | cut -d' ' -f1 | cut -d- -f2);" \
    "install: $((SECONDS - t0)) s"
rm -rf "$D"; mkdir -p "$D/etc" "$D/state" "$D/spool"
PIDS=() JOBS=()
cleanup() {
  set +e
  [ ${#JOBS[@]} -gt 0 ] && scancel "${JOBS[@]}" 2>/dev/null && sleep 3
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  say "stopped the daemons this script started (PIDs ${PIDS[*]:-none})"
}
trap cleanup EXIT

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running: using it"
else
  [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge; chown munge:munge /run/munge /var/log/munge /var/lib/munge
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground --force >"$D/munged.out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
  munge -n | unmunge >/dev/null || die "munged did not start ($D/munged.out)"
fi

HOST=$(hostname -s)
export SLURM_CONF=$D/etc/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=fewshot
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=3600
ReturnToService=2
MailProg=/bin/true
$(slurmd -C | sed -n 1p) State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2
EOF
slurmctld -D -c -f "$SLURM_CONF" >"$D/slurmctld.log" 2>&1 & PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$D/slurmd.log" 2>&1 & PIDS+=($!)
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo -h -o %T | grep -q idle || die "the node did not come up: $D/slurmctld.log, $D/slurmd.log"
say "one-node Slurm up: $(sinfo -h -o '%P %D node(s), %c CPUs, %T')"

# ---------------------------------------------------------------- helpers
# job states, one line per array task: "<id> <state>"
states() { scontrol -o show job "$1" 2>/dev/null \
  | awk '{s=""; for (i = 1; i <= NF; i++) if ($i ~ /^(JobId|ArrayTaskId|JobState)=/) s = s " " $i; print substr(s, 2)}'; }
finished() { ! squeue -h -j "$1" -t PD,R,CG 2>/dev/null | grep -q .; }
wait_jobs() { for j in "$@"; do while ! finished "$j"; do sleep 5; done; done; }
copy_tree() {  # the project's files (tracked and new, not ignored) plus links to the envs and model
  rm -rf "$1"; mkdir -p "$1"
  git -C "$ROOT" ls-files -z -co --exclude-standard | (cd "$ROOT" && tar --null -T - -cf -) | tar -xf - -C "$1"
  for x in .venv .venv-train .venv-serve models; do rm -rf "${1:?}/$x"; [ -e "$ROOT/$x" ] && ln -s "$(readlink -f "$ROOT/$x")" "$1/$x"; done
  true
}
export CONFIG

# ---------------------------------------------------------------- the reference: unsharded
REF=$D/ref SH=$D/sharded
copy_tree "$REF"; copy_tree "$SH"
cd "$REF"
t0=$SECONDS
R=$(sbatch --parsable -J fewshot-ref -o logs/slurm-ref-%j.out --cpus-per-task="$(nproc)" --wrap "bash study.sh")
JOBS+=("$R")
say "reference: study.sh unsharded as job $R ($CONFIG)"
wait_jobs "$R"
say "reference: $(states "$R") in $((SECONDS - t0)) s"
states "$R" | grep -q COMPLETED || die "the unsharded study failed: $REF/logs/slurm-ref-$R.out"

# ---------------------------------------------------------------- the array, twice, with a cancel
cd "$SH"
t0=$SECONDS
A=$(sbatch --parsable --array=0-1 --cpus-per-task=1 slurm/study_array.sbatch)
B=$(sbatch --parsable --array=0-1 --cpus-per-task=1 slurm/study_array.sbatch)
F=$(sbatch --parsable --dependency="afterok:$A:$B" --kill-on-invalid-dep=yes --cpus-per-task="$(nproc)" slurm/finish.sbatch)
JOBS+=("$A" "$B" "$F")
say "two arrays over one folder: $A and $B (2 tasks each, 1 CPU each); finish job $F after both"
BIG=$(.venv/bin/python -c "from fewshot.config import load_config; from fewshot.runs import run_names
print(max(run_names(load_config('$CONFIG')), key=lambda r: r[1])[0])")
LOCK=saves/.$BIG.lock
for _ in $(seq 900); do
  ls saves/"$BIG"/checkpoint-*/trainer_state.json >/dev/null 2>&1 && break
  finished "$A" && finished "$B" && break; sleep 1
done
CK=$(ls -d saves/"$BIG"/checkpoint-* 2>/dev/null | head -1)
[ -n "$CK" ] || die "$BIG wrote no checkpoint within 15 minutes"
[ -f "saves/$BIG/done.json" ] && die "$BIG finished before it could be cancelled: lower train.save_steps"
HOLDER=$(cut -d' ' -f1 "$LOCK")
slurm_var() { tr '\0' '\n' < "/proc/$HOLDER/environ" | sed -n "s/^$1=//p"; }
ARRAY=$(slurm_var SLURM_ARRAY_JOB_ID)
VICTIM=${ARRAY}_$(slurm_var SLURM_ARRAY_TASK_ID)  # the task alone: the array's own id would cancel every task
say "$BIG has $(basename "$CK"); its trainer's task is $VICTIM (PID $HOLDER): scancel $VICTIM"
scancel "$VICTIM"
wait_jobs "$VICTIM"
flock -n "$LOCK" true || die "a process still holds $LOCK after the cancel: a trainer outlived its task"
say "cancelled: $(states "$VICTIM"); no process holds $BIG's lock"
OTHER=$([ "$ARRAY" = "$A" ] && echo "$B" || echo "$A")
C=$(sbatch --parsable --array=0-1 --cpus-per-task=1 slurm/study_array.sbatch)
F2=$(sbatch --parsable --dependency="afterok:$OTHER:$C" --cpus-per-task="$(nproc)" slurm/finish.sbatch)
JOBS+=("$C" "$F2")
say "array $ARRAY submitted again as $C; finish job $F2 after $OTHER and $C"
wait_jobs "$A" "$B" "$C" "$F" "$F2"
say "array tasks: $(states "$A" | paste -sd';'); $(states "$B" | paste -sd';'); $(states "$C" | paste -sd';')"
say "first finish job $F: $(states "$F") ($(scontrol -o show job "$F" | grep -o 'Reason=[A-Za-z]*'))"
say "finish job $F2: $(states "$F2"); sharded study with the cancel: $((SECONDS - t0)) s"
states "$F2" | grep -q COMPLETED || die "the finish job failed: $SH/logs/slurm-fewshot-finish-$F2.out"

# ---------------------------------------------------------------- a node without the envs
M=$(FEWSHOT_TRAIN_ENV=$D/no-train-env sbatch --parsable --array=0-1 --cpus-per-task=1 \
    -o "$D/missing-train-env-%a.out" slurm/study_array.sbatch)
BARE=$D/bare; copy_tree "$BARE"; rm -f "$BARE/.venv"
N=$(cd "$BARE" && sbatch --parsable --cpus-per-task=1 -o "$D/missing-main-env.out" slurm/study_array.sbatch)
JOBS+=("$M" "$N"); wait_jobs "$M" "$N"
say "task without the training env: $(states "$M" | head -1): $(grep -h -m1 'error' "$D"/missing-train-env-0.out)"
say "task without the main env: $(states "$N"): $(head -1 "$D/missing-main-env.out")"
states "$M" | grep -q COMPLETED && die "a task without the training env succeeded"
states "$N" | grep -q COMPLETED && die "a task without the main env succeeded"

# ---------------------------------------------------------------- the checks
cd "$ROOT"
.venv/bin/python bench/slurm_compare.py "$REF" "$SH" --resumed "$BIG"
