#!/usr/bin/env bash
# redis-benchmark through a TAP port, protected vs unprotected, side by side in
# one run: a network namespace with the vswitch's TAP port in it, a backup and
# a primary on 127.0.0.1, then redis-benchmark from the namespace at -P 1 and
# -P 16 with 8 connections while the pair is protected, then the same after the
# backup is stopped (the primary runs on, unprotected: output is no longer held
# for a checkpoint). Needs root, iproute2 and redis-tools; run after `npm run build`.
#
#   sudo bench/redis-tap.sh [REQUESTS]      # default 4000 requests per test
#   sudo MODE=colo bench/redis-tap.sh       # the pair in COLO mode (default remus)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4000}
MODE=${MODE:-remus}
NS="remusd-bench-$$"
DEV="rbench$$"; DEV=${DEV:0:15}
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
R="node dist/src/cli/remusd.js"
head -c 32 /dev/urandom | base64 > "$DIR/key"
ip netns add "$NS"
$R vswitch --listen 127.0.0.1:0 --tap "$DEV,netns=$NS,ip=10.0.0.1/24" 2> "$DIR/sw.log" & PIDS+=($!)
until grep -qs '"remusd vswitch started"' "$DIR/sw.log"; do sleep 0.1; done
SW=$(grep -o '"port":[0-9]*' "$DIR/sw.log" | head -1 | cut -d: -f2)
$R backup --listen 127.0.0.1:0 --control 127.0.0.1:0 --auth-key-file "$DIR/key" --switch "127.0.0.1:$SW" \
  --mode "$MODE" --data-dir "$DIR/b" 2> "$DIR/b.log" & BACKUP=$!; PIDS+=($BACKUP)
until grep -qs '"remusd backup started"' "$DIR/b.log"; do sleep 0.1; done
REPL=$(grep -o '"replication":[0-9]*' "$DIR/b.log" | head -1 | cut -d: -f2)
$R primary --peer "ws://127.0.0.1:$REPL" --control 127.0.0.1:0 --auth-key-file "$DIR/key" --switch "127.0.0.1:$SW" \
  --mode "$MODE" --data-dir "$DIR/p" --event-log "$DIR/p.jsonl" 2> "$DIR/p.log" & PIDS+=($!)
until grep -qs '"to":"protected"' "$DIR/p.jsonl"; do sleep 0.1; done

bench() { # label pipeline
  local rps
  rps=$(ip netns exec "$NS" redis-benchmark -h 10.0.0.10 -c 8 -n "$N" -P "$2" -t set,get --csv |
    awk -F'"' '/^"(SET|GET)"/ { printf "%s %s req/s p50 %s ms  ", $2, $4, $10 }')
  printf '%-12s -P %-3s %s\n' "$1" "$2" "$rps"
}
echo "redis-benchmark -c 8 -n $N through a TAP port (requests/s and p50 latency), $MODE mode"
bench protected 1
bench protected 16
kill "$BACKUP"; wait "$BACKUP" 2>/dev/null || true
until grep -qs '"to":"unprotected"' "$DIR/p.jsonl"; do sleep 0.1; done
bench unprotected 1
bench unprotected 16
