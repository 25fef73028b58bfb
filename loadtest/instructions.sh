#!/bin/bash
# Instructions per proxied request, counted by callgrind: a figure that does not move with
# whatever else runs on the machine, for judging a user-space change to the request path
# (perf.md, "Instructions per request"). It counts user space only; the kernel's share of a
# request (most of it) is not in it.
#
#   loadtest/instructions.sh [BINARY] [LABEL]
#       BINARY  the program to measure (default target/release/coregate)
#       LABEL   where the results go: /tmp/instructions/LABEL (default "coregate")
#   FORWARD=1 loadtest/instructions.sh target/release/loadtest forwarder
#       measures `loadtest forward` (the byte-forwarder floor) instead of a coregate; with
#       RING=rt (or raw...) on that `--ring`.
#
# Method: a Fixed origin (13-byte body) on core 1, the program under callgrind with one
# worker, 1 s of warm-up load, counters zeroed, then 3 s of open-loop load at 4 000 req/s
# over 16 keep-alive connections (a fixed rate, so every build is measured at the same
# batching), counters dumped, the program killed. Instructions in that window divided by
# the responses the load generator counted. Needs valgrind and the release binaries
# (`cargo build --release --workspace`).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/coregate-config.sh
BIN=${1:-target/release/coregate}
LABEL=${2:-coregate}
LOADTEST=target/release/loadtest
D=/tmp/instructions/$LABEL
LISTEN=127.0.0.1:27000
ORIGIN=127.0.0.1:27001
rm -rf "$D"
mkdir -p "$D"

"$LOADTEST" origin --listen $ORIGIN --cores 1 >"$D/origin.log" 2>&1 &
ORIGIN_PID=$!
if [ "${FORWARD:-0}" = 1 ]; then
    COMMAND=("$BIN" forward --listen $LISTEN --upstream $ORIGIN --ring "${RING:-monoio}")
else
    write_coregate_config "$D/coregate.toml" "$LISTEN" "$ORIGIN"
    COMMAND=("$BIN" run "$D/coregate.toml")
fi
valgrind --tool=callgrind --callgrind-out-file="$D/callgrind.out" "${COMMAND[@]}" >"$D/program.log" 2>&1 &
PROGRAM_PID=$!
trap 'kill -9 $PROGRAM_PID $ORIGIN_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -s -o /dev/null "http://$LISTEN/" && break
    sleep 0.5
done
"$LOADTEST" run "http://$LISTEN/" -c 16 -d 1s --cores 1 --json >"$D/warmup.json"
callgrind_control -z $PROGRAM_PID >/dev/null
"$LOADTEST" run "http://$LISTEN/" -c 16 -d 3s --rate 4000 --cores 1 --json >"$D/load.json"
callgrind_control -d $PROGRAM_PID >/dev/null
sleep 1
REQUESTS=$(python3 -c "import json; print(json.load(open('$D/load.json'))['requests'])")
DUMP=$(ls "$D"/callgrind.out.* | head -1)
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$LABEL: $REQUESTS requests, $TOTAL instructions, $((TOTAL / REQUESTS)) per request"
echo "profile: callgrind_annotate --inclusive=yes $DUMP"
