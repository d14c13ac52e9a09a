#!/usr/bin/env bash
# Stops the Slurm that scripts/slurm-up.sh started in DIR: cancels its jobs,
# waits for them, then SIGTERMs the daemons by their recorded pids and ends
# any slurmstepd left behind (they are re-parented to PID 1, so stopping
# the daemons alone leaves jobs running). Removes DIR unless --keep.
set -uo pipefail

keep=""
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
D="${1:-${MER_SLURM_DIR:-}}"
if [ -z "$D" ] || [ ! -f "$D/etc/slurm.conf" ]; then
  echo "usage: scripts/slurm-down.sh [--keep] DIR (a folder from scripts/slurm-up.sh)" >&2
  exit 2
fi
export SLURM_CONF="$D/etc/slurm.conf"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$D/run/slurmctld.pid.rec"; then
  scancel --full "--user=$(id -un)" 2>/dev/null || true
  for _ in $(seq 1 100); do
    if [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ]; then break; fi
    sleep 0.1
  done
fi

for d in slurmd slurmctld munged; do
  if alive "$D/run/$d.pid.rec" || alive "$D/run/$d.pid"; then
    pidf="$D/run/$d.pid.rec"
    [ -f "$pidf" ] || pidf="$D/run/$d.pid"
    pid="$(cat "$pidf")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
done

# Leftover slurmstepd of this cluster: each keeps this cluster's node log
# open, which tells them apart from another cluster's.
for p in /proc/[0-9]*; do
  pid="${p#/proc/}"
  [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
  if ls -l "$p/fd" 2>/dev/null | grep -q -- "$D/log/slurmd.log"; then
    # Its job's processes are its children: end them by pid with it.
    for c in /proc/[0-9]*; do
      if [ "$(awk '{print $4}' "$c/stat" 2>/dev/null)" = "$pid" ]; then
        kill -TERM "${c#/proc/}" 2>/dev/null || true
      fi
    done
    kill -TERM "$pid" 2>/dev/null || true
  fi
done

if [ -z "$keep" ]; then rm -rf "$D"; fi
echo "slurm-down: stopped the Slurm in $D" >&2
