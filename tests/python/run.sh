#!/usr/bin/env bash
# Python and kcat round trips against a real Sluice broker.
# Starts target/release/sluice (else target/debug/sluice; SLUICE_BIN overrides) on free ports
# in a temp dir, runs both Python clients (round trips and group consumers that resume from
# committed offsets; confluent-kafka also with the KIP-848 consumer protocol),
# kafka-python's incremental fetch sessions, Kafka 4.1's topic-id
# offset APIs in kafka-python's own codec, a confluent-kafka
# transactional round trip and a
# kcat round trip, then stops the broker with
# SIGTERM and checks it exits 0. Prints "N passed, N failed" and exits non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PY="${PYTHON:-python3}"

bin="${SLUICE_BIN:-}"
if [[ -z "$bin" ]]; then
  if [[ -x "$root/target/release/sluice" ]]; then bin="$root/target/release/sluice";
  elif [[ -x "$root/target/debug/sluice" ]]; then bin="$root/target/debug/sluice";
  else echo "no sluice binary: build it first (cargo build --release)" >&2; exit 2; fi
fi

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work="$(mktemp -d -t sluice-py-XXXXXX)"
kport="$(free_port)"; aport="$(free_port)"
bootstrap="127.0.0.1:$kport"
log="$work/broker.log"
mkdir -p "$work/data"
"$bin" start --data-dir "$work/data" --kafka-addr "$bootstrap" --admin-addr "127.0.0.1:$aport" \
  --cores 2 --auto-create-topics true >"$log" 2>&1 &
pid=$!

cleanup() {
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Wait until the Kafka port accepts TCP (30 s).
for _ in $(seq 300); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "broker exited during start-up; log:" >&2; tail -50 "$log" >&2; exit 1; fi
  if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$kport),0.2)" 2>/dev/null; then break; fi
  sleep 0.1
done
"$PY" -c "import socket; socket.create_connection(('127.0.0.1',$kport),1)" 2>/dev/null \
  || { echo "broker did not accept TCP on $bootstrap within 30 s; log:" >&2; tail -50 "$log" >&2; exit 1; }
echo "sluice ($bin) on $bootstrap"

passed=0; failed=0
run() {
  local name="$1"; shift
  local cmd=("$@")
  # Shell functions cannot run under timeout(1); they bound their own commands.
  if [[ "$(type -t "$1")" != function ]]; then cmd=(timeout 120 "$@"); fi
  if "${cmd[@]}"; then echo "PASS $name"; passed=$((passed+1)); else echo "FAIL $name"; failed=$((failed+1)); fi
}

kcat_roundtrip() {
  local topic="kcat-$RANDOM$RANDOM"
  local want="$work/kcat-in" got="$work/kcat-out"
  for i in $(seq 1 50); do echo "kcat-line-$i"; done >"$want"
  timeout 60 kcat -b "$bootstrap" -P -t "$topic" -X message.timeout.ms=20000 <"$want" || { echo "kcat produce failed" >&2; return 1; }
  timeout 60 kcat -b "$bootstrap" -C -t "$topic" -e -o beginning -q -X fetch.wait.max.ms=100 >"$got" || { echo "kcat consume failed" >&2; return 1; }
  if ! diff -u "$want" "$got" >&2; then echo "kcat read back other lines than it wrote" >&2; return 1; fi
}

run confluent-kafka "$PY" "$here/roundtrip_confluent.py" --bootstrap "$bootstrap"
run kafka-python "$PY" "$here/roundtrip_kafka_python.py" --bootstrap "$bootstrap"
run kafka-python-fetch-sessions "$PY" "$here/sessions_kafka_python.py" --bootstrap "$bootstrap" --admin "127.0.0.1:$aport"
run confluent-kafka-groups "$PY" "$here/groups_confluent.py" --bootstrap "$bootstrap"
run kafka-python-groups "$PY" "$here/groups_kafka_python.py" --bootstrap "$bootstrap"
run confluent-kafka-consumer-protocol "$PY" "$here/groups_consumer_protocol_confluent.py" --bootstrap "$bootstrap"
run kafka-python-offsets-by-topic-id "$PY" "$here/offsets_by_id_kafka_python.py" --bootstrap "$bootstrap"
run confluent-kafka-transactions "$PY" "$here/txn_confluent.py" --bootstrap "$bootstrap"
if command -v kcat >/dev/null; then run kcat kcat_roundtrip; else echo "FAIL kcat (not installed)"; failed=$((failed+1)); fi

# Clean stop: SIGTERM, exit status 0 within 30 s.
kill -TERM "$pid"
status=0
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
  echo "FAIL sigterm-exit: broker still running 30 s after SIGTERM"; failed=$((failed+1))
else
  wait "$pid" || status=$?
  if [[ "$status" -eq 0 ]]; then echo "PASS sigterm-exit"; passed=$((passed+1));
  else echo "FAIL sigterm-exit: exit status $status after SIGTERM (expected 0)"; failed=$((failed+1)); fi
fi
if [[ "$failed" -gt 0 ]]; then echo "broker log tail:"; tail -40 "$log"; fi

echo "python: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
