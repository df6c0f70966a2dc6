#!/usr/bin/env bash
# The README's picture of `ds01 top`: one `--once --plain` frame over the demo's
# fake tree (8 users), a generated 2-GPU host and three users' containers holding GPUs, rendered as a PNG
# (examples/frame_png.rs) into docs/img/top-demo.png.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
cargo build --release --locked --quiet --example frame_png
B=target/release/ds01
cargo build --release --locked --quiet
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mapfile -t F < <("$B" demo --dir "$W/d" --slices 8 --gpus 2 --write-only)
TREE=${F[1]} GPU=${F[2]}
# Three users' containers hold the GPUs (a canned Engine API).
python3 scripts/fake-engine.py "$W/docker.sock" --gpu-holders 3 &
ENGINE=$!
trap 'kill $ENGINE 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 1 50); do [ -S "$W/docker.sock" ] && break; sleep 0.1; done
cat >"$W/admin.yaml" <<YAML
groups:
  admin:
    members: [$(id -un)]
YAML
DS01_CGROUP_ROOT=$TREE DS01_GPU_SNAPSHOT=$GPU/snapshot.json DS01_PROC_ROOT=$GPU/proc \
    DS01_STATE_DIR=$W/state DS01_SYSTEMCTL=/nonexistent DOCKER_HOST=unix://$W/docker.sock \
    DS01_EVENTS_LOG=$W/events.jsonl \
    "$B" --config "$W/admin.yaml" top --once --plain --width 140 >"$W/frame.txt"
cat "$W/frame.txt"
target/release/examples/frame_png docs/img/top-demo.png <"$W/frame.txt"
echo "wrote docs/img/top-demo.png"
