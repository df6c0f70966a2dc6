#!/usr/bin/env bash
# Whole-command benchmarks with hyperfine (criterion micro-benchmarks: cargo bench).
# Prints the tables recorded in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_cargo
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --locked --quiet
B=$PWD/target/release/ds01
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

CFG=$("$B" demo --users 1000 --dir "$W/d" --write-only)
SD=$W/systemd
export DS01_SYSTEMD_DIR=$SD DS01_CGROUP_ROOT=$W/none DS01_SYSTEMCTL=/bin/true
"$B" --config "$CFG" slices apply --no-reload >/dev/null
hyperfine -N --warmup 3 --export-markdown "$W/slices.md" \
    -n "config check (1,000 users)" "$B --config $CFG config check" \
    -n "limits USER --aggregate (1,000 users)" "$B --config $CFG limits user0001 --aggregate" \
    -n "slices plan, nothing to change (1,000 users)" "$B --config $CFG slices plan" >/dev/null
cat "$W/slices.md"
