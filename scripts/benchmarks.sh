#!/usr/bin/env bash
# Runs every measurement BENCHMARKS.md reports, one after the other, and
# keeps each one's output in target/benchmarks/<name>.log (loadgen's files
# in target/benchmarks/loadgen-*/).
#
#   scripts/benchmarks.sh            # all of them (about 40 minutes on 2 cores)
#   scripts/benchmarks.sh pipeline   # some: verify policy policy-load pipeline kafka
#                                    #       loadgen-embedded loadgen-ramp loadgen-kafka
#
# The Kafka ones start the Tansu broker with scripts/broker.sh (installing
# it if absent) unless WARRANT_KAFKA_BROKERS names one. Nothing else should
# run on the machine meanwhile: ratios are measured side by side within a
# run, absolute numbers move with the machine's other tenants.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/benchmarks"
mkdir -p "$out"
cd "$root"

all=(verify policy policy-load pipeline kafka loadgen-embedded loadgen-ramp loadgen-kafka)
if [ "$#" -gt 0 ]; then which=("$@"); else which=("${all[@]}"); fi

log() { echo "== $*" >&2; }

started_broker=""
cleanup() {
  local pid="$out/kafka-engine/pid"
  if [ -f "$pid" ]; then
    kill -TERM "$(cat "$pid")" 2>/dev/null || true
    rm -f "$pid"
  fi
  if [ -n "$started_broker" ]; then scripts/broker.sh stop || true; fi
}
trap cleanup EXIT

brokers() {
  if [ -z "${WARRANT_KAFKA_BROKERS:-}" ]; then
    scripts/broker.sh status || started_broker=yes
    WARRANT_KAFKA_BROKERS="$(scripts/broker.sh start)"
    export WARRANT_KAFKA_BROKERS
  fi
}

loadgen_bin() {
  cargo build --release -q -p warrant-loadgen -p warrant-cli >&2
  echo "$root/target/release/loadgen"
}

# A `warrant run` on fresh topics, trusting loadgen's keys and running the
# example policy; prints the loadgen arguments that target it.
start_engine() {
  local dir="$out/kafka-engine"
  rm -rf "$dir" && mkdir -p "$dir"
  local unique="bench-$$-$(date +%s)"
  local warrant="$root/target/release/warrant"
  "$warrant" keygen --out "$dir/engine.key" >/dev/null
  "$root/target/release/loadgen" trust --principals 16 >"$dir/trust.toml"
  cat >"$dir/warrant.toml" <<EOF
[kafka]
brokers = "$WARRANT_KAFKA_BROKERS"
group_id = "g-$unique"
intents_topic = "intents-$unique"
decisions_topic = "decisions-$unique"
lineage_topic = "lineage-$unique"
[engine]
key_file = "engine.key"
[trust]
file = "trust.toml"
[policy]
path = "$root/examples/policy/payments.toml"
[admin]
listen = "127.0.0.1:0"
EOF
  # Created on the broker scripts/broker.sh runs on that port.
  WARRANT_BROKER_PORT="${WARRANT_KAFKA_BROKERS##*:}" scripts/broker.sh topics \
    "intents-$unique" "decisions-$unique" "lineage-$unique" >&2
  "$warrant" run --config "$dir/warrant.toml" >"$dir/engine.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 600); do
    grep -q "assigned partitions" "$dir/engine.log" && break
    sleep 0.1
  done
  if ! grep -q "assigned partitions" "$dir/engine.log"; then
    cat "$dir/engine.log" >&2
    kill -TERM "$(cat "$dir/pid")" 2>/dev/null || true
    exit 1
  fi
  echo "--target kafka --brokers $WARRANT_KAFKA_BROKERS --intents-topic intents-$unique --decisions-topic decisions-$unique"
}

stop_engine() {
  local dir="$out/kafka-engine"
  kill -TERM "$(cat "$dir/pid")" 2>/dev/null || true
  wait "$(cat "$dir/pid")" 2>/dev/null || true
  rm -f "$dir/pid"
}

for name in "${which[@]}"; do
  log "$name"
  case "$name" in
    verify)
      WARRANT_RATIO_ROUNDS=30 cargo bench -p warrant-bench --bench verify_ratio 2>&1 | tee "$out/verify.log" ;;
    policy)
      # summarize.py reads every result under target/criterion: earlier
      # runs' policy groups (rule counts this run may not measure) go first.
      rm -rf "$root"/target/criterion/policy_*
      cargo bench -p warrant-bench --bench policy 2>&1 | tee "$out/policy.log"
      python3 bench/summarize.py policy | tee -a "$out/policy.log" ;;
    policy-load)
      cargo run --release -q -p warrant-bench --example policy_load 2>&1 | tee "$out/policy-load.log" ;;
    pipeline)
      cargo bench -p warrant-bench --bench pipeline 2>&1 | tee "$out/pipeline.log"
      cargo bench -p warrant-bench --bench stages 2>&1 | tee "$out/stages.log" ;;
    kafka)
      brokers
      cargo bench -p warrant-bench --bench kafka 2>&1 | tee "$out/kafka.log" ;;
    loadgen-embedded)
      bin="$(loadgen_bin)"
      "$bin" --rate 20000 --duration 10 --progress lines --out "$out/loadgen-embedded" 2>&1 | tee "$out/loadgen-embedded.log" ;;
    loadgen-ramp)
      bin="$(loadgen_bin)"
      "$bin" --ramp --slo-p99-ms 10 --ramp-start 5000 --ramp-factor 1.5 --ramp-refine 2 --duration 5 \
        --progress lines --out "$out/loadgen-ramp" 2>&1 | tee "$out/loadgen-ramp.log" ;;
    loadgen-kafka)
      brokers
      bin="$(loadgen_bin)"
      args="$(start_engine)"
      status=0
      # shellcheck disable=SC2086
      "$bin" $args --rate 300 --duration 20 --deadline-ms 10000 --progress lines \
        --out "$out/loadgen-kafka" 2>&1 | tee "$out/loadgen-kafka.log" || status=$?
      stop_engine
      if [ "$status" -ne 0 ]; then
        # Lost, shed or wrong decisions, or no run at all: not numbers to report.
        echo "loadgen-kafka failed (exit $status): see $out/loadgen-kafka.log" >&2
        exit "$status"
      fi ;;
    *)
      echo "unknown benchmark '$name'; known: ${all[*]}" >&2
      exit 2 ;;
  esac
done
log "done: logs in $out"
