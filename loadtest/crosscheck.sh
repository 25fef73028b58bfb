#!/bin/bash
# An independent cross-check of `loadtest compare`'s closed-loop figures: Debian's wrk makes
# the load, this script reads the proxies' CPU time from /proc, and the proxy configurations
# are written here, not by loadtest. Only the fixture origin is loadtest's (`loadtest origin`,
# the same 13-byte or 16 KiB body for every proxy).
#
#   [RAW=1] [ONLY="TARGET ..."] [COREGATE=PATH] [BASELINE=PATH] loadtest/crosscheck.sh [ROUNDS] [SECONDS] [BODY_BYTES]
#       ROUNDS      rounds over the proxies, each starting one further on (default 3)
#       SECONDS     measured seconds of each wrk run, after a 1 s warm-up run (default 5)
#       BODY_BYTES  the origin's response body (default 13)
#       COREGATE    the coregate binary (default target/release/coregate), for an A/B
#       BASELINE    a second coregate binary, measured as target coregate-baseline in the
#                   same rounds (an A/B of two builds in one run)
#       ONLY        just these targets (names as in the results: forwarder-rt, nginx, ...)
#
# Targets: `loadtest forward` (the byte-forwarder floor), coregate, nginx and HAProxy; with
# RAW=1 also the forwarder on coregate's own runtime (`--ring rt`) and on raw rings
# (`--ring raw`, `raw+fixed`, `raw+multishot`, `raw+fixed+multishot`: what leaving monoio,
# registered files and multishot receives save on the floor).
# Set-up, as in `loadtest compare`: each proxy with one worker (its whole process tree) pinned
# to core 0; the origin and wrk (one thread, 64 keep-alive connections) pinned to core 1.
# CPU per request: utime + stime of every thread of every process of the proxy
# (/proc/PID/task/TID/stat, in clock ticks) over the wrk run, divided by the requests wrk
# counted. The window includes wrk's connection set-up and wind-down, a few milliseconds of
# a run of seconds. wrk has no fixed-rate mode, so there are no latency figures at a fixed
# rate here; wrk's own latency under a closed loop is printed but is not the issue's p99.
#
# Needs: wrk, nginx, haproxy (those missing are skipped), and the release binaries
# (`cargo build --release --workspace`). Loopback only; every process started is killed on
# exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/coregate-config.sh
ROUNDS=${1:-3}
SECONDS_MEASURED=${2:-5}
BODY=${3:-13}
BIN=target/release
COREGATE=${COREGATE:-$BIN/coregate}
ORIGIN=127.0.0.1:28100
LISTEN=127.0.0.1:28101
DIR=$(mktemp -d /tmp/crosscheck.XXXXXX)
TICK_US=$((1000000 / $(getconf CLK_TCK)))
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$DIR"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "crosscheck: wrk not found (apt-get install wrk)" >&2; exit 1; }
[ -x "$COREGATE" ] && [ -x $BIN/loadtest ] || {
    echo "crosscheck: build first: cargo build --release --workspace" >&2
    exit 1
}

# The proxies' configurations, each the plain keep-alive reverse proxy its documentation
# describes, with one worker and no access log.
write_coregate_config "$DIR/coregate.toml" "$LISTEN" "$ORIGIN"
cat >"$DIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/nginx-body;
    proxy_temp_path $DIR/nginx-proxy;
    keepalive_requests 100000000;
    upstream origin { server $ORIGIN; keepalive 64; keepalive_requests 100000000; }
    server {
        listen $LISTEN;
        location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
cat >"$DIR/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend proxy
    bind $LISTEN
    default_backend origin
backend origin
    server origin $ORIGIN pool-max-conn 64
EOF

start() {
    case $1 in
    forwarder) taskset -c 0 $BIN/loadtest forward --listen $LISTEN --upstream $ORIGIN >"$DIR/$1.log" 2>&1 & ;;
    forwarder-*) taskset -c 0 $BIN/loadtest forward --listen $LISTEN --upstream $ORIGIN \
        --ring "${1#forwarder-}" >"$DIR/$1.log" 2>&1 & ;;
    coregate) taskset -c 0 "$COREGATE" run "$DIR/coregate.toml" >"$DIR/$1.log" 2>&1 & ;;
    coregate-baseline) taskset -c 0 "$BASELINE" run "$DIR/coregate.toml" >"$DIR/$1.log" 2>&1 & ;;
    nginx) taskset -c 0 nginx -c "$DIR/nginx.conf" -p "$DIR" >"$DIR/$1.log" 2>&1 & ;;
    haproxy) taskset -c 0 haproxy -f "$DIR/haproxy.cfg" >"$DIR/$1.log" 2>&1 & ;;
    esac
    PROXY=$!
    disown
    PIDS+=("$PROXY")
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://$LISTEN/" && return 0
        sleep 0.1
    done
    echo "crosscheck: $1 did not answer; its log:" >&2
    cat "$DIR/$1.log" >&2
    exit 1
}

stop() {
    pkill -KILL -P "$PROXY" 2>/dev/null || true
    kill -KILL "$PROXY" 2>/dev/null || true
    # The port is free again before the next proxy binds it.
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://$LISTEN/" || return 0
        sleep 0.1
    done
}

# utime + stime, in clock ticks, of every thread of $PROXY and of its children.
cpu_ticks() {
    local total=0 pid stat
    for pid in "$PROXY" $(pgrep -P "$PROXY" || true); do
        for stat in /proc/"$pid"/task/*/stat; do
            # Fields 14 and 15, counted after the command name's closing parenthesis.
            total=$((total + $(sed 's/.*) //' "$stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)))
        done
    done
    echo $total
}

taskset -c 1 $BIN/loadtest origin --listen $ORIGIN --cores 1 --body-bytes "$BODY" >"$DIR/origin.log" 2>&1 &
PIDS+=($!)
disown
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://$ORIGIN/" && break
    sleep 0.1
done

TARGETS=(forwarder coregate)
if [ -n "${BASELINE:-}" ]; then
    TARGETS+=(coregate-baseline)
fi
if [ "${RAW:-0}" = 1 ]; then
    TARGETS+=(forwarder-rt forwarder-raw forwarder-raw+fixed forwarder-raw+multishot forwarder-raw+fixed+multishot)
fi
for program in nginx haproxy; do
    if command -v $program >/dev/null; then
        TARGETS+=($program)
    else
        echo "crosscheck: $program not found: skipped" >&2
    fi
done

if [ -n "${ONLY:-}" ]; then
    read -r -a TARGETS <<<"$ONLY"
fi
echo "round target req/s cpu_us_per_req" >"$DIR/results"
for round in $(seq "$ROUNDS"); do
    for step in $(seq 0 $((${#TARGETS[@]} - 1))); do
        target=${TARGETS[$(((round + step) % ${#TARGETS[@]}))]}
        start "$target"
        taskset -c 1 wrk -t1 -c64 -d1s "http://$LISTEN/" >/dev/null
        before=$(cpu_ticks)
        taskset -c 1 wrk -t1 -c64 -d"${SECONDS_MEASURED}s" --latency "http://$LISTEN/" >"$DIR/wrk.out"
        after=$(cpu_ticks)
        stop
        requests=$(awk '/requests in/ { print $1 }' "$DIR/wrk.out")
        rps=$(awk '/Requests\/sec/ { print $2 }' "$DIR/wrk.out")
        if grep -q "Non-2xx\|Socket errors" "$DIR/wrk.out"; then
            echo "crosscheck: $target: wrk saw errors:" >&2
            grep "Non-2xx\|Socket errors" "$DIR/wrk.out" >&2
        fi
        cpu=$(awk -v t=$((after - before)) -v us="$TICK_US" -v n="$requests" 'BEGIN { printf "%.2f", t * us / n }')
        echo "round $round $target: $rps req/s, $cpu us CPU/req ($requests requests)" >&2
        echo "$round $target $rps $cpu" >>"$DIR/results"
    done
done

# Medians over rounds, and each proxy against coregate.
python3 - "$DIR/results" "$BODY" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
order = ["forwarder", "forwarder-rt", "forwarder-raw", "forwarder-raw+fixed", "forwarder-raw+multishot",
         "forwarder-raw+fixed+multishot", "coregate", "coregate-baseline", "nginx", "haproxy"]
targets = sorted(set(r[1] for r in rows), key=order.index)
med = {t: (statistics.median(float(r[2]) for r in rows if r[1] == t),
           statistics.median(float(r[3]) for r in rows if r[1] == t)) for t in targets}
print(f"wrk cross-check, body {sys.argv[2]} bytes, medians of {len(rows) // len(targets)} rounds")
print()
print("| target | req/s (wrk) | CPU µs/req (/proc) |")
print("|---|---:|---:|")
for t in targets:
    print(f"| {t} | {med[t][0]:.0f} | {med[t][1]:.2f} |")
print()
for t in (t for t in targets if t != "coregate" and "coregate" in med):
    print(f"coregate / {t}: CPU per request {med['coregate'][1] / med[t][1]:.2f}×, "
          f"throughput {med['coregate'][0] / med[t][0]:.2f}×")
EOF
