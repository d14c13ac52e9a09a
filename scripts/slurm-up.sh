#!/usr/bin/env bash
# Starts a private single-node Slurm (munged, slurmctld, slurmd) for the
# tests, as measured in shared/research/slurm.md. Usage:
#
#   scripts/slurm-up.sh [DIR]      # DIR defaults to a new temp folder
#   . DIR/env                      # exports SLURM_CONF (and MER_SLURM_DIR)
#   scripts/slurm-down.sh DIR
#
# Needs root (slurmd runs jobs as their user) and Debian's packages, which
# it installs when missing. Nothing system-wide is started: the daemons
# run from DIR on free ports and are stopped by their recorded pids.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "slurm-up: needs root (slurmd starts jobs as their user)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  # Package scripts would start the system's own daemons (with the
  # system's config and ports); policy-rc.d exit 101 forbids that.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

D="${1:-$(mktemp -d /tmp/mer-slurm.XXXXXX)}"
mkdir -p "$D"
D="$(cd "$D" && pwd)"
mkdir -p "$D"/{etc,munge,state,spool,log,run}
# munged refuses a socket folder that others cannot traverse (mktemp
# makes 0700).
chmod 755 "$D" "$D/munge"

# The key must be ≥ 32 bytes, 0600 and owned by munged's user (root here;
# Debian's own key belongs to `munge`, so it is not reused).
head -c 64 /dev/urandom > "$D/munge/munge.key"
chmod 600 "$D/munge/munge.key"
SOCK="$D/munge/munge.socket"
munged -F --key-file "$D/munge/munge.key" --socket "$SOCK" \
  --pid-file "$D/munge/munged.pid" --seed-file "$D/munge/munge.seed" \
  --log-file "$D/log/munged.log" >"$D/log/munged.out" 2>&1 &
echo $! > "$D/run/munged.pid"
for _ in $(seq 1 100); do
  if munge -S "$SOCK" -n >/dev/null 2>&1; then break; fi
  sleep 0.05
done
munge -S "$SOCK" -n >/dev/null || { cat "$D/log/munged.log" >&2; exit 1; }

# Two free TCP ports: a second cluster on the same ports dies with
# "Address already in use", or worse, its clients talk to the other one.
read -r CTLD_PORT SLURMD_PORT < <(python3 - <<'PY'
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))
PY
)

# slurmd -C prints this machine's NodeName line; keep its hardware and name
# the node localhost (an unresolvable hostname makes slurmd loop).
HW="$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')"
MEM_KB="$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
REAL_MEM=$((MEM_KB / 1024 * 8 / 10))

cat > "$D/etc/slurm.conf" <<CONF
ClusterName=mer$$
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
# cgroup plugins pass falsely in containers (job COMPLETED, no output).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Without slurmdbd, one line per finished job (state, exit code).
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# The default 3 s pause between scheduling passes doubles a test's time.
SchedulerParameters=batch_sched_delay=0
# A dependency that can never be met is cancelled instead of pending forever.
DependencyParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=3600
MailProg=/bin/true
MpiDefault=none
NodeName=localhost $HW RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$D/etc/slurm.conf"
slurmctld -D -f "$SLURM_CONF" >"$D/log/slurmctld.out" 2>&1 &
echo $! > "$D/run/slurmctld.pid.rec"
slurmd -D -N localhost -f "$SLURM_CONF" >"$D/log/slurmd.out" 2>&1 &
echo $! > "$D/run/slurmd.pid.rec"

state=""
for _ in $(seq 1 300); do
  state="$(sinfo -h -N -o %t 2>/dev/null || true)"
  if [ "$state" = idle ]; then break; fi
  sleep 0.1
done
if [ "$state" != idle ]; then
  echo "slurm-up: the node did not become idle (state: ${state:-none}); logs in $D/log" >&2
  tail -n 20 "$D/log/slurmctld.log" "$D/log/slurmd.log" >&2 || true
  exit 1
fi

cat > "$D/env" <<ENV
export SLURM_CONF=$SLURM_CONF
export MER_SLURM_DIR=$D
ENV
echo "slurm-up: single-node Slurm ready in $D (ports $CTLD_PORT/$SLURMD_PORT)" >&2
cat "$D/env"
