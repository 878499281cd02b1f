#!/usr/bin/env bash
# Install and start a one-node SLURM cluster on this machine, for tests/test_slurm.py.
#
# For Debian 12 as root, with or without systemd: installs slurm-wlm and munge with
# apt-get, writes /etc/slurm/slurm.conf for this host (CPUs and memory from
# `slurmd -C`, one default partition), starts munged, slurmctld and slurmd as
# daemons, and waits until the node is idle and `srun -N1 true` runs.
#
# Safe to run again: a cluster that already answers is left as it is. Exits non-zero
# with a message naming what failed (no root, packages not installable, a daemon that
# does not come up); tests/test_slurm.py then skips with the reason.
#
# Settings (environment): SLURM_UP_PARTITION (default: debug), SLURM_UP_TIMEOUT
# (seconds to wait for the node, default: 60).
set -euo pipefail

PARTITION=${SLURM_UP_PARTITION:-debug}
TIMEOUT=${SLURM_UP_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MARKER="# written by embedpatch .ci/slurm-up.sh"
LOG_DIR=/var/log/slurm

say() { echo "slurm-up: $*"; }
die() {
    echo "slurm-up: error: $*" >&2
    exit 1
}

# The cluster answers: the node is usable and a job step runs on it.
cluster_answers() {
    command -v sinfo >/dev/null && command -v srun >/dev/null || return 1
    local state
    state=$(timeout 10 sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null) || return 1
    case "$state" in
        idle* | mixed* | allocated* | completing*) ;;
        *) return 1 ;;
    esac
    timeout 30 srun --nodes=1 --ntasks=1 --time=1 true >/dev/null 2>&1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"
NODE=$(hostname -s)
[ -n "$NODE" ] || die "hostname -s is empty"

if cluster_answers; then
    say "already running: node $NODE $(sinfo --noheader --nodes="$NODE" --format='%T, partition %P')"
    exit 0
fi

# ---- packages --------------------------------------------------------------------
missing=()
for binary in munged slurmctld slurmd sbatch; do
    command -v "$binary" >/dev/null || missing+=("$binary")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing slurm-wlm and munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    command -v apt-get >/dev/null || die "apt-get not found: install slurm-wlm and munge by hand"
    apt_options=(-q -o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20)
    # A failed update is not yet fatal (the lists may be there, the packages cached), but
    # the install then gets less time: the registry is most likely out of reach.
    install_limit=600
    if ! timeout 300 apt-get "${apt_options[@]}" update; then
        say "warning: apt-get update failed (package registry unreachable?)"
        install_limit=120
    fi
    timeout "$install_limit" apt-get "${apt_options[@]}" install -y --no-install-recommends \
        slurm-wlm munge ||
        die "apt-get install slurm-wlm munge failed (is the Debian package registry reachable?)"
    for binary in munged slurmctld slurmd sbatch; do
        command -v "$binary" >/dev/null || die "$binary still missing after installing slurm-wlm"
    done
else
    say "slurm-wlm and munge already installed"
fi
say "$(slurmd -V 2>/dev/null || echo "slurmd version unknown")"

# ---- munge -------------------------------------------------------------------------
MUNGE_USER=root
id munge >/dev/null 2>&1 && MUNGE_USER=munge
install -d -m 0700 -o "$MUNGE_USER" /etc/munge /var/lib/munge /var/log/munge
install -d -m 0755 -o "$MUNGE_USER" /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown "$MUNGE_USER" /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    # A munged that runs but does not answer (its socket removed) is restarted.
    pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = munged ]; then
        say "munged (pid $pid) does not answer; stopping it"
        kill "$pid"
        for _ in $(seq 20); do
            [ -d "/proc/$pid" ] || break
            sleep 0.5
        done
    fi
    say "starting munged (as $MUNGE_USER)"
    rm -f /run/munge/munged.pid
    if [ "$MUNGE_USER" = root ]; then
        munged --force
    else
        runuser -u munge -- munged
    fi
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# ---- slurm.conf --------------------------------------------------------------------
# The node as slurmd sees it: NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
NODE_LINE=$(slurmd -C | grep '^NodeName=') || die "slurmd -C did not describe this node"
NODE_LINE=$(sed -E "s/^NodeName=[^ ]+/NodeName=$NODE/" <<<"$NODE_LINE")
SLURM_USER=root
id slurm >/dev/null 2>&1 && SLURM_USER=slurm

if [ -e "$CONF" ] && ! grep -qxF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching this machine's cluster"
fi
mkdir -p /etc/slurm
new_conf=$(mktemp)
cat >"$new_conf" <<EOF
$MARKER
# One-node test cluster: the controller and the only compute node are this host.
ClusterName=embedpatch-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=$SLURM_USER
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups (containers, no systemd): plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
# No accounting daemon: sacct and sacctmgr do not answer, squeue shows finished
# jobs for MinJobAge seconds (the Snakemake SLURM plugin needs >= 120 to use squeue).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
if [ -e "$CONF" ] && cmp -s "$new_conf" "$CONF"; then
    rm -f "$new_conf"
    say "$CONF unchanged"
    conf_changed=0
else
    install -m 0644 "$new_conf" "$CONF"
    rm -f "$new_conf"
    say "wrote $CONF (${NODE_LINE#NodeName=}, partition $PARTITION)"
    conf_changed=1
fi
install -d -m 0755 -o "$SLURM_USER" /var/spool/slurmctld "$LOG_DIR"
install -d -m 0755 /var/spool/slurmd

# ---- daemons -----------------------------------------------------------------------
# A daemon is running when its pid file names a live process of that name.
running() {
    local pid
    pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
stop() {
    local pid
    running "$1" || return 0
    pid=$(cat "/run/$1.pid")
    say "stopping $1 (pid $pid) to reload $CONF"
    kill "$pid"
    for _ in $(seq 20); do
        [ -d "/proc/$pid" ] || return 0
        sleep 0.5
    done
    die "$1 (pid $pid) did not stop"
}
start() {
    if running "$1"; then
        say "$1 already running (pid $(cat "/run/$1.pid"))"
        return 0
    fi
    say "starting $1"
    "$@" || die "$1 failed to start (see $LOG_DIR/$1.log)"
    for _ in $(seq 20); do
        running "$1" && return 0
        sleep 0.5
    done
    die "$1 did not stay up (see $LOG_DIR/$1.log)"
}
if [ "$conf_changed" = 1 ]; then
    stop slurmd
    stop slurmctld
fi
start slurmctld
start slurmd

# ---- wait for the node -------------------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
resumed=0
while true; do
    state=$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null || true)
    case "$state" in
        idle* | mixed* | allocated*) break ;;
        down* | drain*)
            if [ "$resumed" = 0 ]; then
                say "node $NODE is $state; resuming it"
                scontrol update NodeName="$NODE" State=RESUME || true
                resumed=1
            fi
            ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] ||
        die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-none}'; see $LOG_DIR/slurmctld.log and slurmd.log)"
    sleep 1
done
say "node $NODE is $state"
timeout 60 srun --nodes=1 --ntasks=1 --time=1 true ||
    die "srun -N1 true failed on node $NODE (see $LOG_DIR/slurmd.log)"
say "srun -N1 true: ok"
sinfo
