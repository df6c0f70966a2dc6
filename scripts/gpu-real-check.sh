#!/usr/bin/env bash
# The real-hardware GPU checks of issue #17, as one short script for a machine with
# an NVIDIA GPU (the device machine: no network, maybe no Rust). Build here first:
#   cargo build --release --examples && cargo build --release
# and carry target/release/ds01 and target/release/examples/{gpu_hold,gpu_sample_cost}.
# Writes everything to $OUT (default ./gpu-real): nvidia-smi's view, ds01's view
# while a small CUDA process (examples/gpu_hold.rs, driver API only) holds 512 MiB,
# a snapshot to commit as a fixture, `ds01 check --only gpu`, and the cost of a
# sample with real NVML (examples/gpu_sample_cost.rs). Compare afterwards: the
# holding pid and its memory in ds01-gpu.json against nvidia-smi-apps.csv.
set -u
OUT=${OUT:-gpu-real}
B=${B:-target/release/ds01}
EX=${EX:-target/release/examples}
mkdir -p "$OUT"
run() { # NAME CMD...: stdout to $OUT/NAME, stderr to $OUT/NAME.err, exit code noted
    local name=$1
    shift
    "$@" >"$OUT/$name" 2>"$OUT/$name.err"
    echo "$name: exit $?" | tee -a "$OUT/summary.txt"
}
export DS01_STATE_DIR=$OUT/state
unset DS01_GPU_SNAPSHOT
run nvidia-smi-L.txt nvidia-smi -L
run nvidia-smi-gpus.csv nvidia-smi --query-gpu=index,uuid,name,memory.used,memory.total,utilization.gpu,mig.mode.current --format=csv,nounits
"$EX/gpu_hold" 0 512 90 >"$OUT/hold.txt" 2>&1 &
HOLD=$!
sleep 8
echo "gpu_hold pid $HOLD: $(cat "$OUT/hold.txt")" | tee -a "$OUT/summary.txt"
run nvidia-smi-apps.csv nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,nounits
run ds01-gpu.json "$B" gpu --json --docker-socket /nonexistent
run ds01-gpu.txt "$B" gpu --docker-socket /nonexistent
run snapshot.json "$B" gpu --snapshot
run check-gpu.txt "$B" check --only gpu
run cost.txt "$EX/gpu_sample_cost" 200
kill "$HOLD" 2>/dev/null
wait 2>/dev/null
cat "$OUT/summary.txt" "$OUT/ds01-gpu.txt" "$OUT/cost.txt" "$OUT/check-gpu.txt"
