#!/usr/bin/env bash
# GPU accounting benchmarks (issue #17) on a generated host of 8 GPUs and 200 GPU
# processes (a replayed snapshot and a fixture /proc; NVML where a GPU is present
# is measured the same way with DS01_GPU_SNAPSHOT unset):
#  * `ds01 gpu --json`, the whole command, with hyperfine;
#  * the monitor's idle CPU with GPU sampling every 10 s against --no-gpu, on the
#    1,000-slice fixture tree, over BENCH_SECS (default 60) seconds each.
# The per-sample cost is the criterion bench `cargo bench --bench gpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --locked --quiet
B=$PWD/target/release/ds01
W=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
SECS=${BENCH_SECS:-60}
mapfile -t F < <("$B" demo --users 1000 --slices 1000 --gpus 8 --dir "$W/d" --write-only)
CFG=${F[0]} TREE=${F[1]} GPU=${F[2]}
export DS01_GPU_SNAPSHOT=$GPU/snapshot.json DS01_PROC_ROOT=$GPU/proc DS01_STATE_DIR=$W/state
# No Docker here: holders unknown (the Engine API's list is one more request).
hyperfine -N --warmup 3 --runs 30 --export-markdown "$W/gpu.md" \
    -n "ds01 gpu --json (8 GPUs, 200 processes)" \
    "$B --config $CFG gpu --json --docker-socket $W/none.sock" >/dev/null
cat "$W/gpu.md"

# idle NAME ARGS...: the monitor's CPU over SECS seconds after its first pass.
idle() {
    local name=$1 hz t0 t1
    shift
    "$B" --config "$CFG" monitor --cgroup-root "$TREE" --stats-log "$W/$name.stats" \
        --state-dir "$W/$name.state" --events-log "$W/$name.events" \
        --alerts-dir "$W/$name.alerts" --docker-socket "$W/none.sock" --no-lifecycle "$@" \
        >"$W/$name.out" 2>"$W/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do grep -q 'watching' "$W/$name.out" && break; sleep 0.1; done
    hz=$(getconf CLK_TCK)
    sleep 2
    t0=$(awk '{print $14 + $15}' /proc/"$pid"/stat)
    sleep "$SECS"
    t1=$(awk '{print $14 + $15}' /proc/"$pid"/stat)
    awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$SECS" -v n="$name" \
        'BEGIN { c = (b - a) / hz; printf "| %s | %.2f s per %d s = %.2f %% of one core |", n, c, s, 100 * c / s }'
    awk '/VmRSS/ { printf " %.1f MB |\n", $2 / 1024 }' /proc/"$pid"/status
    kill "$pid"
}
echo
echo "| monitor, 1,000 fixture slices | CPU while idle | resident memory |"
echo "|---|---:|---:|"
idle "GPU sampling every 10 s (8 GPUs, 200 processes)" --gpu-interval 10s
idle "--no-gpu" --no-gpu
grep -h 'GPU accounting' "$W"/*.out | sed 's/^/note: /' >&2 || true
