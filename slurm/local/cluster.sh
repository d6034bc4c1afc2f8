#!/usr/bin/env bash
# A real single-node Slurm (munged + slurmctld + slurmd) in a private directory, for tests and demos.
#
#   slurm/local/cluster.sh start    start the daemons (idempotent; cleans up after a crashed run)
#   slurm/local/cluster.sh stop     cancel jobs, stop the daemons by their recorded PIDs
#   slurm/local/cluster.sh status   exit 0 when all three daemons answer, 3 otherwise
#   slurm/local/cluster.sh env      print `export SLURM_CONF=...` (use: eval "$(... env)")
#
# No systemd and nothing under /etc: munged gets its own key, socket and pid file, Slurm its own
# config, state, spool, logs and ports. The directory and the ports are derived from the checkout's
# path, so two checkouts on one machine run two independent clusters. Overrides:
#   EMBSOLVE_LOCAL_SLURM_DIR   private directory (keep it short: unix socket paths must stay < 108 bytes)
#   EMBSOLVE_LOCAL_SLURM_PORT  slurmctld port (slurmd uses the next one)
#   EMBSOLVE_LOCAL_SLURM_CPUS  CPUs the node advertises (default 4, more than a small machine has, so
#                        4-rank jobs run; SlurmdParameters=config_overrides makes slurmd accept it)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
tag=$(printf '%s' "$repo_root" | cksum | cut -d' ' -f1)
dir=${EMBSOLVE_LOCAL_SLURM_DIR:-/tmp/embsolve-slurm-$(id -u)-$((tag % 100000))}
ctld_port=${EMBSOLVE_LOCAL_SLURM_PORT:-$((20000 + (tag % 4000) * 2))}
slurmd_port=$((ctld_port + 1))
cpus=${EMBSOLVE_LOCAL_SLURM_CPUS:-4}
conf=$dir/slurm.conf
socket=$dir/munge.sock

die() { echo "cluster.sh: $*" >&2; exit 1; }

# The PID recorded for daemon $1, if that process is alive and is still that daemon of this
# cluster (a stale pid file after a crash may name a recycled PID: check its command line).
live_pid() {
  local name=$1 pid cmdline
  [ -s "$dir/$name.pid" ] || return 1
  pid=$(tr -dc '0-9' <"$dir/$name.pid")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmdline" in
    *"$name"*"$dir"*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

# Stop daemon $1: SIGTERM by recorded PID, wait up to 10 s, then SIGKILL. Removes the pid file.
stop_daemon() {
  local name=$1 pid
  if pid=$(live_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: $name ($pid) ignored SIGTERM, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/$name.pid"
}

# Start "$@" detached in its own session, record its PID as daemon $name.
spawn() {
  local name=$1
  shift
  setsid "$@" </dev/null >>"$dir/log/$name.out" 2>&1 &
  echo $! >"$dir/$name.pid"
}

write_config() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  chmod 700 "$dir"
  # Every task (the batch script and each srun'd rank) gets these: OpenMPI refuses root otherwise,
  # and the node advertises more CPUs than the machine may have, so a waiting rank yields its core
  # instead of spinning (OpenMPI only does that by itself when it knows it is oversubscribed).
  cat >"$dir/task_prolog.sh" <<'EOF'
#!/bin/sh
echo "export OMPI_ALLOW_RUN_AS_ROOT=1"
echo "export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
echo "export OMPI_MCA_mpi_yield_when_idle=1"
EOF
  chmod 755 "$dir/task_prolog.sh"
  cat >"$conf" <<EOF
# Single-node Slurm for embsolve tests; written by slurm/local/cluster.sh (do not edit).
ClusterName=embsolve$((tag % 100000))
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd.daemon.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$dir/task_prolog.sh
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
ReturnToService=2
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MinJobAge=600
MessageTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

running() {
  live_pid munged >/dev/null && live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null
}

cmd_start() {
  if running && SLURM_CONF=$conf scontrol ping 2>/dev/null | grep -q UP; then
    echo "local Slurm already running ($dir)"
    return 0
  fi
  # A partial or crashed earlier run: stop what is left, start clean.
  stop_all quiet
  for tool in munged mungekey slurmctld slurmd scontrol sinfo; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs slurm-wlm and munge)"
  done
  [ ${#socket} -lt 100 ] || die "munge socket path too long (${#socket} bytes): set EMBSOLVE_LOCAL_SLURM_DIR shorter"
  rm -rf "$dir/state" "$dir/spool"
  write_config
  [ -s "$dir/munge.key" ] || mungekey --create --keyfile="$dir/munge.key" >/dev/null
  chmod 600 "$dir/munge.key"
  rm -f "$socket" "$socket.lock"
  spawn munged munged --foreground --force --socket="$socket" --key-file="$dir/munge.key" \
    --pid-file="$dir/munged.daemon.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munged.seed"
  for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
  [ -S "$socket" ] || die "munged did not start; see $dir/log/munged.out and munged.log"
  export SLURM_CONF=$conf
  spawn slurmctld slurmctld -D -c -f "$conf"
  for _ in $(seq 200); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.05; done
  scontrol ping 2>/dev/null | grep -q UP || die "slurmctld did not answer; see $dir/log/slurmctld.log"
  spawn slurmd slurmd -D -N localhost -f "$conf"
  for _ in $(seq 200); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.05
  done
  [ "$state" = idle ] || die "node not idle (state '$state'); see $dir/log/slurmd.log"
  echo "local Slurm running: $conf (slurmctld port $ctld_port, $cpus CPUs)"
}

stop_all() {
  if live_pid slurmctld >/dev/null && live_pid munged >/dev/null; then
    SLURM_CONF=$conf scancel --full --quiet --partition=local 2>/dev/null || true
    # Give running steps a moment to end before their slurmd goes away.
    for _ in $(seq 50); do
      [ -z "$(SLURM_CONF=$conf squeue -h -o %i 2>/dev/null || true)" ] && break
      sleep 0.1
    done
  fi
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon munged
  rm -f "$socket" "$socket.lock" "$dir"/*.daemon.pid
  [ "${1:-}" = quiet ] || echo "local Slurm stopped"
}

cmd_status() {
  local name pid ok=0
  for name in munged slurmctld slurmd; do
    if pid=$(live_pid "$name"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"
      ok=3
    fi
  done
  if [ $ok -eq 0 ]; then
    SLURM_CONF=$conf sinfo -N -o "%N %t %c" || ok=3
  fi
  return $ok
}

case "${1:-}" in
  start) cmd_start ;;
  stop) stop_all ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
