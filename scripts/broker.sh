#!/usr/bin/env bash
# A real Kafka-compatible broker on this machine, for the Kafka tests and
# for trying `warrant` against Kafka without Docker: Tansu
# (https://crates.io/crates/tansu), with SQLite storage in a directory that
# survives broker restarts.
#
#   scripts/broker.sh start     install Tansu if absent, start it, wait until
#                               it answers, create the topics
#   scripts/broker.sh stop      stop it (data kept)
#   scripts/broker.sh restart   stop, then start (data kept)
#   scripts/broker.sh status    exit 0 if it answers
#   scripts/broker.sh wipe      stop and delete its data
#   scripts/broker.sh topics NAME...
#                               create these topics too (if absent; a name
#                               with "keys" in it is created compacted)
#
# Settings (environment):
#   WARRANT_BROKER_PORT   listener port on 127.0.0.1 (default 19092)
#   WARRANT_BROKER_DIR    data, pid and log directory
#                         (default ${TMPDIR:-/tmp}/warrant-broker-$PORT)
#   WARRANT_PARTITIONS    partitions of each topic (default 4)
#   TANSU                 the tansu binary (default: on PATH, else
#                         ~/.cargo/bin/tansu, installed there if missing)
#
# Installing Tansu builds it from crates.io:
#   cargo install tansu --locked --features dynostore,libsql
# which takes about 8 to 9 minutes on 2 cores, once.
set -euo pipefail

port="${WARRANT_BROKER_PORT:-19092}"
dir="${WARRANT_BROKER_DIR:-${TMPDIR:-/tmp}/warrant-broker-$port}"
partitions="${WARRANT_PARTITIONS:-4}"
url="tcp://127.0.0.1:$port"
topics=(warrant.intents warrant.decisions warrant.lineage warrant.keys)

tansu_bin() {
  if [[ -n "${TANSU:-}" ]]; then
    echo "$TANSU"
  elif command -v tansu >/dev/null 2>&1; then
    command -v tansu
  else
    echo "$HOME/.cargo/bin/tansu"
  fi
}

install() {
  local bin
  bin="$(tansu_bin)"
  if [[ -x "$bin" ]]; then
    return
  fi
  echo "broker: installing Tansu from crates.io (about 8-9 minutes on 2 cores, once)" >&2
  cargo install tansu --locked --features dynostore,libsql >&2
}

# Whether the broker answers, within 3 s (Tansu's own client keeps
# retrying a refused connection for much longer).
answers() {
  timeout 1 bash -c ">/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
  timeout 3 "$(tansu_bin)" topic list --broker "$url" >/dev/null 2>&1
}

# The pid of the broker this script started, if it is still that process.
running_pid() {
  local pid
  [[ -f "$dir/pid" ]] || return 1
  pid="$(cat "$dir/pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  grep -q tansu "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

start() {
  install
  mkdir -p "$dir"
  if running_pid >/dev/null; then
    echo "broker: already running on $url (pid $(running_pid))" >&2
  else
    (
      cd "$dir"
      nohup "$(tansu_bin)" broker \
        --listener-url "$url" \
        --advertised-listener-url "$url" \
        --storage-engine "sqlite://tansu.db" \
        >>"$dir/broker.log" 2>&1 &
      echo $! >"$dir/pid"
    )
  fi
  local waited=$SECONDS
  until answers; do
    if ! running_pid >/dev/null; then
      echo "broker: Tansu exited; last lines of $dir/broker.log:" >&2
      tail -20 "$dir/broker.log" >&2
      exit 1
    fi
    if ((SECONDS - waited > 20)); then
      echo "broker: no answer on $url after 20 s; stopping it (see $dir/broker.log)" >&2
      stop
      exit 1
    fi
    sleep 0.1
  done
  if ! create_topics "${topics[@]}"; then
    stop
    exit 1
  fi
  echo "broker: ready on 127.0.0.1:$port (data in $dir)" >&2
  echo "127.0.0.1:$port"
}

# Creates the named topics that do not exist yet.
create_topics() {
  local existing
  existing="$("$(tansu_bin)" topic list --broker "$url" 2>/dev/null || true)"
  for t in "$@"; do
    # A keys topic is compacted: a key's latest record (a revocation, say)
    # must never expire. `warrant run` refuses one that is not.
    local config=()
    if [[ "$t" == *keys* ]]; then
      config=(--config cleanup.policy=compact)
    fi
    # A lineage topic keeps every record: it is the audit trail, and a
    # partition is resumed from its last checkpoint, however old.
    if [[ "$t" == *lineage* ]]; then
      config=(--config retention.ms=-1 --config retention.bytes=-1)
    fi
    # ... with one partition: a key's records must be read in order.
    local n="$partitions"
    if [[ "$t" == *keys* ]]; then
      n=1
    fi
    if ! grep -q "\"$t\"" <<<"$existing"; then
      if ! timeout 10 "$(tansu_bin)" topic create --broker "$url" --partitions "$n" "${config[@]}" "$t" >/dev/null; then
        echo "broker: cannot create topic $t" >&2
        return 1
      fi
    fi
  done
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    echo "broker: stopped (data kept in $dir)" >&2
  fi
  rm -f "$dir/pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) answers ;;
  wipe) stop; rm -rf "$dir" ;;
  topics)
    shift
    answers || { echo "broker: not running on 127.0.0.1:$port" >&2; exit 1; }
    create_topics "$@" ;;
  *)
    sed -n '2,27p' "$0" >&2
    exit 2
    ;;
esac
