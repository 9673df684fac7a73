#!/usr/bin/env bash
# A one-node SLURM cluster on this machine: munged, slurmctld and slurmd on localhost, one
# partition ("local", the default) with 2 CPUs. Enough to try `antlr-train -m hydra/launcher=slurm`
# and to run tests/cli/test_slurm.py. Needs root on Debian or Ubuntu; installs slurm-wlm and munge
# with apt-get when they are missing. Safe to run again (it restarts the daemons).
#
#   sudo scripts/slurm_local_cluster.sh          # then: sinfo
#   SLURM_LOCAL_CPUS=4 sudo scripts/slurm_local_cluster.sh
#   sudo scripts/slurm_local_cluster.sh stop
set -euo pipefail

CPUS="${SLURM_LOCAL_CPUS:-2}"
PARTITION="${SLURM_LOCAL_PARTITION:-local}"
CONF_DIR=/etc/slurm
HOST="$(hostname -s)"

say() { echo "slurm_local_cluster: $*"; }

stop_daemons() {
    for name in slurmd slurmctld munged; do
        if pid="$(pgrep -x "$name")"; then
            kill $pid 2>/dev/null || true
        fi
    done
    for _ in $(seq 50); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || return 0
        sleep 0.1
    done
}

if [ "${1:-start}" = "stop" ]; then
    stop_daemons
    say "stopped"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    say "needs root (it installs packages and starts system daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

stop_daemons

# munge: the key and the folders belong to the munge user
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged

# slurm.conf for this host alone
MEMORY_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > "$CONF_DIR/slurm.conf" <<EOF
# Written by scripts/slurm_local_cluster.sh: one node (this host), one partition.
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
rm -f "$CONF_DIR/cgroup.conf"  # no cgroup plugin: proctrack/linuxproc and task/none need none

slurmctld || { say "slurmctld did not start; see /var/log/slurm/slurmctld.log" >&2; exit 1; }
slurmd || { say "slurmd did not start; see /var/log/slurm/slurmd.log" >&2; exit 1; }

for _ in $(seq 100); do
    state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)"
    case "$state" in
        idle*|mix*|alloc*) say "up: partition $PARTITION, node $HOST, $CPUS CPUs"; exit 0 ;;
        down*|drain*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.3
done
say "the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
