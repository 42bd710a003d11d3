#!/usr/bin/env bash
# Chaos under load: loadgen drives `warrant run` on a Tansu broker of its
# own while the engine is killed with SIGKILL and restarted again and
# again, and the broker is restarted too. Then `warrant audit` reads the
# intents, decisions and lineage topics and proves: every intent has a
# decision; no intent has two different verdicts; no invalid intent was
# authorized; the lineage log verifies end to end. It prints the figures
# and exits 1 on any violation.
#
#   scripts/chaos.sh            # 12 kills, 3 broker restarts, ~4 min
#   scripts/chaos.sh --short    # 10 kills, 2 broker restarts, ~3 min (CI)
#
# Settings (environment): CHAOS_PORT (broker port, default 19195),
# CHAOS_RATE (intents/s, default 100), CHAOS_DIR (work directory, default
# target/chaos/<time>), CARGO_PROFILE (dev or release, default dev).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

kills=12
broker_restarts=3
if [ "${1:-}" = "--short" ]; then
  kills=10
  broker_restarts=2
elif [ -n "${1:-}" ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
port="${CHAOS_PORT:-19195}"
# The engine takes `WARRANT_<SECTION>_<KEY>` overrides from the environment
# (the test suite exports WARRANT_KAFKA_BROKERS for its own broker): this
# run's settings are the file's alone.
for v in $(compgen -e | grep '^WARRANT_' || true); do unset "$v"; done
rate="${CHAOS_RATE:-100}"
profile="${CARGO_PROFILE:-dev}"
dir="${CHAOS_DIR:-$root/target/chaos/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$dir"
say() { echo "chaos: $*" >&2; }

cargo build -q --profile "$profile" -p warrant-cli -p warrant-loadgen
bin="$root/target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
warrant="$bin/warrant"
loadgen="$bin/loadgen"

export WARRANT_BROKER_PORT="$port"
export WARRANT_BROKER_DIR="$dir/broker"
brokers="$(scripts/broker.sh start)"
engine_pid=""
loadgen_pid=""
cleanup() {
  [ -n "$engine_pid" ] && kill -9 "$engine_pid" 2>/dev/null || true
  [ -n "$loadgen_pid" ] && kill -9 "$loadgen_pid" 2>/dev/null || true
  scripts/broker.sh stop || true
}
trap cleanup EXIT

unique="chaos-$$-$(date +%s)"
scripts/broker.sh topics "intents-$unique" "decisions-$unique" "lineage-$unique" >&2
"$warrant" keygen --out "$dir/engine.key" >/dev/null
"$loadgen" trust --principals 16 >"$dir/trust.toml"
cat >"$dir/warrant.toml" <<EOF
[kafka]
brokers = "$brokers"
group_id = "g-$unique"
intents_topic = "intents-$unique"
decisions_topic = "decisions-$unique"
lineage_topic = "lineage-$unique"
sink_timeout_ms = 1000
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[engine]
key_file = "engine.key"
pin = false
[trust]
file = "trust.toml"
[policy]
path = "$root/examples/policy/payments.toml"
[admin]
listen = ""
EOF

incarnation=0
start_engine() {
  incarnation=$((incarnation + 1))
  "$warrant" run --config "$dir/warrant.toml" --status-every 0 >"$dir/engine-$incarnation.log" 2>&1 &
  engine_pid=$!
}

# Waits until the running engine owns the partitions (an engine that exits
# by itself, say on a broker that is not back yet, is started again, as a
# supervisor would). Kills land on an engine at work, not on one still
# joining the group: Tansu 0.6's SQLite group store does not survive
# members dying faster than the group settles (its storage task panics).
wait_assigned() {
  for _ in $(seq 1 1200); do
    grep -q "assigned partitions" "$dir/engine-$incarnation.log" && return 0
    if ! kill -0 "$engine_pid" 2>/dev/null; then
      say "engine $incarnation exited by itself; starting another"
      sleep 1
      start_engine
    fi
    sleep 0.1
  done
  say "engine $incarnation got no partitions in 120 s"
  return 1
}

# Long enough for every kill and broker restart, then a quiet tail.
seconds=$((kills * 12 + broker_restarts * 10 + 20))
start_engine
wait_assigned
say "load: $rate intents/s for ${seconds}s; $kills kills, $broker_restarts broker restarts; files in $dir"
"$loadgen" --target kafka --brokers "$brokers" \
  --intents-topic "intents-$unique" --decisions-topic "decisions-$unique" \
  --rate "$rate" --duration "$seconds" --deadline-ms 300000 --drain-timeout 240 \
  --progress lines --interval 5 --out "$dir/loadgen" >"$dir/loadgen.txt" 2>"$dir/loadgen.log" &
loadgen_pid=$!

done_kills=0
done_restarts=0
every=$(( kills / (broker_restarts + 1) ))
while [ "$done_kills" -lt "$kills" ]; do
  sleep "$(( 2 + RANDOM % 3 )).$(( RANDOM % 10 ))"
  kill -9 "$engine_pid" 2>/dev/null || true
  wait "$engine_pid" 2>/dev/null || true
  done_kills=$((done_kills + 1))
  if [ "$done_restarts" -lt "$broker_restarts" ] && [ $(( done_kills % every )) -eq 0 ]; then
    scripts/broker.sh stop >/dev/null 2>&1
    sleep 2
    scripts/broker.sh start >/dev/null
    done_restarts=$((done_restarts + 1))
    say "kill $done_kills of $kills, broker restart $done_restarts of $broker_restarts"
  else
    say "kill $done_kills of $kills"
  fi
  start_engine
  wait_assigned
done

loadgen_status=0
wait "$loadgen_pid" || loadgen_status=$?
loadgen_pid=""
kill -TERM "$engine_pid" 2>/dev/null || true
wait "$engine_pid" 2>/dev/null || true
engine_pid=""

audit_status=0
"$warrant" audit --config "$dir/warrant.toml" --json >"$dir/audit.json" 2>"$dir/audit.err" || audit_status=$?
"$warrant" audit --config "$dir/warrant.toml" >"$dir/audit.txt" 2>&1 || true
cat "$dir/audit.txt"
# The audit must have seen the run: an audit of empty or cut topics (a
# broker that lost data, a wiring slip) finds no violation in what it
# does not read.
seen_status=0
python3 - "$dir/audit.json" "$kills" "$done_restarts" "$dir/loadgen/summary.json" <<'EOF' || seen_status=$?
import json, sys
r = json.load(open(sys.argv[1]))
v = r["violation_count"]
print(f"chaos: intents {r['intents']}, kills {sys.argv[2]}, broker restarts {sys.argv[3]}, "
      f"decisions re-emitted {r['re_emitted']}, violations {v}")
try:
    g = json.load(open(sys.argv[4]))
except (OSError, ValueError) as e:
    sys.exit(f"chaos: no loadgen summary to compare the audit with: {e}")
delivered = g["sent"] - g["undelivered"]
if r["distinct_intents"] < delivered or r["authorized"] == 0:
    sys.exit(f"chaos: the audit saw {r['distinct_intents']} distinct intents and "
             f"{r['authorized']} authorizations; loadgen delivered {delivered}")
EOF
tail -n 25 "$dir/loadgen.txt" >&2 || true
if [ "$loadgen_status" -ne 0 ]; then
  say "loadgen reported failures (see $dir/loadgen.txt)"
fi
if [ "$audit_status" -ne 0 ] || [ "$loadgen_status" -ne 0 ] || [ "$seen_status" -ne 0 ]; then
  exit 1
fi
