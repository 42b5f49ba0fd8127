#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine, for CI and local tests of the Slurm profile.
#
#   eval "$(cluster/start-slurm.sh [STATE_DIR])"    # default STATE_DIR: /tmp/ilscaling-slurm
#   sinfo; snakemake --profile tests/cluster/profile ...
#   cluster/stop-slurm.sh [STATE_DIR]
#
# Needs root (apt-get, munged as user munge, slurmd). Installs `slurm-wlm munge` with apt-get if
# missing, writes slurm.conf, gres.conf and a munge key into STATE_DIR (the script writes nothing
# under /etc), starts munged, slurmctld and slurmd by hand (no systemd), records their pids in
# STATE_DIR/pids and waits until the node is idle. Progress goes to stderr; stdout is only the
# line `export SLURM_CONF=STATE_DIR/slurm.conf PATH=STATE_DIR/bin:$PATH` (also saved in
# STATE_DIR/env), which every Slurm client (sinfo, sbatch, squeue, srun, the Snakemake slurm
# executor) needs to find this cluster.
#
# The node has the machine's CPUs (or SLURM_CPUS), 95% of its memory, and ONE FAKE GPU: a GRES `gpu` backed by a
# clone of /dev/null (STATE_DIR/dev/nvidia0), so jobs asking for `gpu=1` (sbatch --gpus=1) are
# scheduled and run, but there is no GPU behind it (CUDA sees none). It tests scheduling only.
#
# No accounting daemon: `sacct` does not work here, so clients must query job states with squeue
# (the test profile sets `slurm-status-command: squeue`); MinJobAge=300 keeps finished jobs
# visible to squeue for 5 minutes.
#
# Idempotent: if this STATE_DIR's daemons are already up and the node answers, it only prints the
# export line. Leftovers of a half-started cluster are stopped first.
# Environment: SLURM_CPUS (the node's CPUs; default nproc), SLURMCTLD_PORT (default 6817),
# SLURMD_PORT (6818), SLURM_START_TIMEOUT (60 s).
set -euo pipefail

STATE=${1:-/tmp/ilscaling-slurm}
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
NODE=localhost

log() { echo "start-slurm: $*" >&2; }
die() { echo "start-slurm: ERROR: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (apt-get, munged as user munge, slurmd)"
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
CONF=$STATE/slurm.conf
export SLURM_CONF=$CONF

# Already running? (all recorded pids alive, and the controller answers)
if [[ -f $STATE/pids ]]; then
    alive=1
    while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || alive=0
    done < "$STATE/pids"
    state=$(timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -1 || true)
    if [[ $alive == 1 && -f $STATE/env && ${state,,} =~ ^(idle|mixed|allocated|completing) ]]; then
        log "already running ($STATE)"
        cat "$STATE/env"
        exit 0
    fi
    log "stopping the leftovers of an earlier start"
    "$HERE/stop-slurm.sh" "$STATE" >&2
fi

# Packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    log "installing slurm-wlm munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends slurm-wlm munge >&2
fi
id munge >/dev/null 2>&1 || die "user munge missing after installing munge"

for port in "$CTLD_PORT" "$SLURMD_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is in use (another Slurm?); set SLURMCTLD_PORT / SLURMD_PORT"
    fi
done

# State folder: a fresh configuration each start (job state is cleared too: slurmctld -c).
rm -rf "$STATE/spool" "$STATE/log" "$STATE/run" "$STATE/munge" "$STATE/dev" "$STATE/bin"
mkdir -p "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log" "$STATE/run" "$STATE/munge" "$STATE/dev"
chmod 755 "$STATE"

# munge: a private key and socket
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$STATE/munge"
chmod 755 "$STATE/munge"   # munged needs the socket folder executable for all
chmod 400 "$STATE/munge/munge.key"
SOCKET=$STATE/munge/munge.socket.2

# The fake GPU: a character device with /dev/null's numbers (falls back to a link if mknod is
# not allowed, e.g. in an unprivileged container).
mknod -m 666 "$STATE/dev/nvidia0" c 1 3 2>/dev/null || ln -s /dev/null "$STATE/dev/nvidia0"

# The node: the machine's CPUs (or SLURM_CPUS: more oversubscribes the machine, which lets more
# short test jobs overlap their start-up) and 95% of its memory (as slurmd -C sees it).
CPUS=${SLURM_CPUS:-$(nproc)}
REAL_MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
[[ -n $REAL_MEM ]] || die "could not read RealMemory from slurmd -C"
MEM=$((REAL_MEM * 95 / 100))

cat > "$CONF" <<EOF
# Written by cluster/start-slurm.sh: a private single-node test cluster (not for production).
ClusterName=ilscaling
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
MailProg=/bin/true
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Without a default, a job without --mem would take the whole node's memory.
DefMemPerCPU=1024
# Keep finished jobs visible to squeue (the status command without accounting) for 5 minutes.
MinJobAge=300
ReturnToService=2
# Trust the node line below, not the hardware (allows SLURM_CPUS above the real count).
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# One fake GPU (see gres.conf): lets gpu=1 jobs be scheduled; there is no real GPU.
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
# Client wrappers: the Slurm executor's job step (snakemake-executor-plugin-slurm-jobstep)
# drops every SLURM_* variable, SLURM_CONF included, before its nested `srun`, which then looks
# for /etc/slurm/slurm.conf. These wrappers (first on PATH) point the clients at this cluster
# without touching /etc.
mkdir -p "$STATE/bin"
for tool in srun sbatch squeue scancel sinfo scontrol sacct; do
    real=""
    for candidate in $(type -ap "$tool"); do   # the real client, not a wrapper of an earlier start
        grep -q "start-slurm.sh wrapper" "$candidate" 2>/dev/null || { real=$candidate; break; }
    done
    [[ -n $real ]] || die "$tool missing"
    printf '#!/bin/sh\n# start-slurm.sh wrapper\nexport SLURM_CONF=%s\nexec %s "$@"\n' "$CONF" "$real" \
        > "$STATE/bin/$tool"
    chmod 755 "$STATE/bin/$tool"
done

cat > "$STATE/gres.conf" <<EOF
# FAKE GPU: a clone of /dev/null, for scheduling tests only.
NodeName=$NODE Name=gpu File=$STATE/dev/nvidia0
EOF

show_logs() {
    for f in "$STATE/munge/munged.log" "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log"; do
        echo "----- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
}
fail() {  # show the logs, stop what was started, exit
    echo "start-slurm: ERROR: $*" >&2
    show_logs
    "$HERE/stop-slurm.sh" "$STATE" >&2 || true
    exit 1
}

wait_for_file() {  # a daemon's pid file
    local file=$1 what=$2
    for _ in $(seq 1 $((TIMEOUT * 10))); do
        [[ -s $file ]] && return 0
        sleep 0.1
    done
    fail "$what did not start within ${TIMEOUT}s (no $file)"
}

T0=$(date +%s.%N)
: > "$STATE/pids"
runuser -u munge -- munged --socket="$SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed" || fail "munged failed"
wait_for_file "$STATE/munge/munged.pid" munged
echo "munged $(cat "$STATE/munge/munged.pid")" >> "$STATE/pids"

slurmctld -c -f "$CONF" || fail "slurmctld failed"
wait_for_file "$STATE/run/slurmctld.pid" slurmctld
echo "slurmctld $(cat "$STATE/run/slurmctld.pid")" >> "$STATE/pids"

slurmd -f "$CONF" -N "$NODE" || fail "slurmd failed"
wait_for_file "$STATE/run/slurmd.pid" slurmd
echo "slurmd $(cat "$STATE/run/slurmd.pid")" >> "$STATE/pids"

deadline=$(($(date +%s) + TIMEOUT))
state=""
until [[ $state == idle ]]; do
    if (($(date +%s) >= deadline)); then
        fail "node $NODE not idle within ${TIMEOUT}s (state: '${state:-no answer}')"
    fi
    sleep 0.2
    state=$(timeout 5 sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -1 | tr -d '*~#' || true)
    if [[ $state == inval || $state == drain ]]; then
        fail "node $NODE refused its configuration (state: '$state'; reason: $(sinfo -h -N -n "$NODE" -o %E))"
    fi
done
log "node $NODE idle after $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $T0}") s" \
    "($CPUS CPUs, ${MEM} MB, 1 fake GPU; state in $STATE)"
echo "export SLURM_CONF=$CONF PATH=$STATE/bin:\$PATH" | tee "$STATE/env"
