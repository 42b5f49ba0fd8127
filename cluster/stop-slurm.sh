#!/usr/bin/env bash
# Stops the single-node test cluster that cluster/start-slurm.sh started:
#
#   cluster/stop-slurm.sh [STATE_DIR]     # default STATE_DIR: /tmp/ilscaling-slurm
#
# Cancels the jobs still queued or running on that cluster (through its own scancel), then ends
# exactly the daemons recorded in STATE_DIR/pids (slurmd, slurmctld, munged), after checking
# that each pid is still that daemon of that STATE_DIR. Logs stay in STATE_DIR for reading.
# Safe to run twice, or when nothing was started.
set -uo pipefail

STATE=${1:-/tmp/ilscaling-slurm}
log() { echo "stop-slurm: $*" >&2; }

if [[ ! -f $STATE/pids ]]; then
    log "nothing to stop ($STATE/pids missing)"
    exit 0
fi
STATE=$(cd "$STATE" && pwd)
export SLURM_CONF=$STATE/slurm.conf

# Is pid still the daemon `name` this state folder started (not a reused pid)?
ours() {
    local name=$1 pid=$2
    [[ -r /proc/$pid/cmdline ]] || return 1
    local cmd
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline")
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" && $cmd == *"$STATE/"* ]]
}

# Jobs first: their processes belong to slurmstepd, which outlives slurmd.
if ours slurmctld "$(awk '$1 == "slurmctld" {print $2}' "$STATE/pids")"; then
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        log "cancelling jobs $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs || true
        for _ in $(seq 1 50); do
            [[ -z $(timeout 5 squeue -h -t RUNNING,COMPLETING -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi

# Daemons in reverse start order.
tac "$STATE/pids" | while read -r name pid; do
    if ! ours "$name" "$pid"; then
        log "$name ($pid) is not running"
        continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name ($pid) ignored SIGTERM for 10 s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name ($pid)"
done
rm -f "$STATE/pids" "$STATE/env"
