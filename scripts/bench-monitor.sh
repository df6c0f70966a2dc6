#!/usr/bin/env bash
# ds01 monitor benchmarks (issue #9): idle CPU and memory with 1,000 user slices, and
# the time of a /metrics scrape with 1,000 users. Part of scripts/bench.sh; runs on
# its own too. Fixture trees always; real cgroup2 slices with armed PSI triggers when
# run as root on a host with /sys/fs/cgroup/unified (hybrid) or a pure v2 tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null; }
cargo build --release --locked --quiet
B=$PWD/target/release/ds01
W=$(mktemp -d)
PIDS=()
REAL=
MADE_ROOT=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "$REAL" ]; then
        find "$REAL" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
        rmdir "$REAL" 2>/dev/null || true
        # ds01.slice too when this script made it.
        [ -n "$MADE_ROOT" ] && rmdir "$(dirname "$REAL")" 2>/dev/null || true
    fi
    rm -rf "$W"
}
trap cleanup EXIT
SECS=${BENCH_SECS:-60}
CFG=$("$B" demo --users 1000 --dir "$W/d" --write-only | head -1)

# start_monitor NAME ROOT: a monitor on ROOT serving a free port; sets PORT and MPID.
start_monitor() {
    local name=$1 root=$2
    "$B" --config "$CFG" monitor --cgroup-root "$root" --listen 127.0.0.1:0 \
        --stats-log "$W/$name.stats" --state-dir "$W/$name.state" \
        --events-log "$W/$name.events" --alerts-dir "$W/$name.alerts" >"$W/$name.out" 2>"$W/$name.err" &
    MPID=$!
    PIDS+=("$MPID")
    for _ in $(seq 1 100); do grep -q 'serving http' "$W/$name.out" && break; sleep 0.1; done
    PORT=$(sed -n 's|.*serving http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$W/$name.out")
    for _ in $(seq 1 100); do grep -q 'watching' "$W/$name.out" && break; sleep 0.1; done
    sed -n 's/^ds01 monitor: //p' "$W/$name.out"
}

# idle NAME: CPU (utime+stime) and VmRSS of MPID over SECS seconds of idling.
idle() {
    local hz t0 t1
    hz=$(getconf CLK_TCK)
    sleep 2 # past the first pass
    t0=$(awk '{print $14 + $15}' /proc/"$MPID"/stat)
    sleep "$SECS"
    t1=$(awk '{print $14 + $15}' /proc/"$MPID"/stat)
    awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$SECS" -v n="$1" \
        'BEGIN { c = (b - a) / hz; printf "| %s | %.2f s per %d s = %.2f %% of one core |", n, c, s, 100 * c / s }'
    awk '/VmRSS/ { printf " %.1f MB |\n", $2 / 1024 }' /proc/"$MPID"/status
}

echo "| monitor, 1,000 user slices | CPU while idle | resident memory |"
echo "|---|---:|---:|"
FIX=$("$B" demo --dir "$W/fx" --slices 1000 --users 1000 --write-only | tail -1)
start_monitor fixture "$FIX" >"$W/fixture.said"
FPORT=$PORT
idle "fixture tree (no PSI triggers: not cgroup2)"

V2=
if [ "$(id -u)" = 0 ] && [ -e /sys/fs/cgroup/unified/cgroup.procs ]; then
    V2=/sys/fs/cgroup/unified
elif [ "$(id -u)" = 0 ] && [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    V2=/sys/fs/cgroup
fi
if [ -n "$V2" ]; then
    REAL=$V2/ds01.slice/ds01-bench.slice
    [ -d "$V2/ds01.slice" ] || MADE_ROOT=1
    mkdir -p "$REAL"
    for i in $(seq -w 0 999); do mkdir -p "$REAL/ds01-bench-user$i.slice"; done
    start_monitor real "$V2/ds01.slice" >"$W/real.said"
    RPORT=$PORT
    idle "real cgroup2 slices, $(grep -o '[0-9]* pressure trigger(s)' "$W/real.said")"
else
    echo "SKIPPED: real cgroup2 slices (needs root and a cgroup2 tree)" >&2
fi

echo
RUNS=(-n "GET /metrics, 1,000 fixture slices + 1,000-user config" "curl -sf -o /dev/null http://127.0.0.1:$FPORT/metrics")
if [ -n "${RPORT:-}" ]; then
    RUNS+=(-n "GET /metrics, 1,000 real cgroup2 slices" "curl -sf -o /dev/null http://127.0.0.1:$RPORT/metrics")
fi
RUNS+=(-n "GET /healthz (curl alone, for scale)" "curl -sf -o /dev/null http://127.0.0.1:$FPORT/healthz")
hyperfine -N --warmup 5 --runs 50 --export-markdown "$W/metrics.md" "${RUNS[@]}" >/dev/null
cat "$W/metrics.md"
echo
echo "size of one scrape: $(curl -sf http://127.0.0.1:$FPORT/metrics | wc -c) bytes, $(curl -sf http://127.0.0.1:$FPORT/metrics | grep -vc '^#') series;" \
    "the monitor's own ds01_monitor_scrape_duration_seconds: $(curl -sf http://127.0.0.1:$FPORT/metrics | sed -n 's/^ds01_monitor_scrape_duration_seconds //p') s"
