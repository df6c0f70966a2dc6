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

# --- ds01 events over 1,000,000 generated events, against the equivalent jq ---
# jq must skip malformed lines too (fromjson?), or it stops at the first one.
EV=$("$B" demo --dir "$W/ev" --events 1000000 --write-only | tail -1)
export DS01_EVENTS_LOG=$EV
SINCE=$(date -u -d '2 days ago' +%Y-%m-%dT%H:%M:%SZ)
hyperfine --warmup 1 --runs 5 --export-markdown "$W/events.md" \
    -n "ds01 events --user user0042 --limit 50" "$B events --user user0042 --limit 50 --json 2>/dev/null" \
    -n "jq: user0042, last 50" "jq -cR 'fromjson? | select(.user==\"user0042\")' $EV | tail -n 50" \
    -n "ds01 events --type resource --since 2d" "$B events --type resource --since 2d --all --json 2>/dev/null" \
    -n "jq: type resource since 2d" "jq -cR --arg s $SINCE 'fromjson? | select(((.event_type // .event) | startswith(\"resource\")) and ((.timestamp // .ts) >= \$s))' $EV" \
    -n "ds01 events --summary" "$B events --summary 2>/dev/null" \
    -n "jq: summary by type, user, day" "jq -nR 'reduce (inputs | fromjson?) as \$e ({}; .type[(\$e.event_type // \$e.event)] += 1 | .user[(\$e.user // \"-\")] += 1 | .day[((\$e.timestamp // \$e.ts // \"\")[0:10])] += 1)' $EV" \
    >/dev/null
cat "$W/events.md"

# --- ds01 collect against the floor (walk + read every file once, no parsing) ---
cargo build --release --locked --quiet --example collect_floor
FLOOR=$PWD/target/release/examples/collect_floor
for N in 10 100 1000 10000; do
    T=$("$B" demo --dir "$W/c$N" --slices "$N" --write-only | tail -1)
    FILES=$(find "$T" -type f | wc -l)
    echo "== $N slices, $FILES files"
    hyperfine -N --warmup 2 --runs 10 --export-markdown "$W/collect$N.md" \
        -n "floor ($N slices)" "$FLOOR $T" \
        -n "ds01 collect ($N slices)" "$B collect --cgroup-root $T --stats-log $W/c$N/stats.log --state-dir $W/c$N/state --events-log $W/c$N/events.jsonl" \
        >/dev/null
    cat "$W/collect$N.md"
done

# --- the time the docker wrapper adds to `docker run` ---
# A fake real docker that exits at once, a canned Engine API on a unix socket, the
# 1,000-user config; the wrapper runs the full non-admin path (slice read, two API
# calls per container, quota decision, event append) as user0001.
printf '#!/bin/sh\nexit 0\n' > "$W/fake-docker"; chmod +x "$W/fake-docker"
python3 scripts/fake-engine.py "$W/engine.sock" & ENGINE=$!
trap 'kill $ENGINE 2>/dev/null; rm -rf "$W"' EXIT
sleep 0.5
export DS01_REAL_DOCKER=$W/fake-docker DOCKER_HOST=unix://$W/engine.sock DS01_EVENTS_LOG=$W/wrapper-events.jsonl DS01_CONFIG=$CFG DS01_WRAPPER_USER=user0001
hyperfine -N --warmup 5 --runs 50 --export-markdown "$W/docker.md" \
    -n "fake docker alone" "$W/fake-docker run -it --rm busybox true" \
    -n "ds01 docker (wrapper + fake docker)" "$B docker run -it --rm busybox true" >/dev/null
cat "$W/docker.md"

# --- ds01 stats --summary over 7 days x 100 users (1,008,000 lines) against jq ---
# The jq pipeline computes less (peak and mean only); it is a lower bound for jq.
H=$("$B" demo --dir "$W/st" --history-users 100 --history-days 7 --write-only | tail -1)
hyperfine -N --warmup 1 --runs 3 --export-markdown "$W/stats.md" \
    -n "ds01 stats --summary" "$B stats --file $H --summary" \
    -n "jq -c 'select(.memory_pct > 90)' (one pass, no summary)" "jq -c 'select(.memory_pct > 90)' $H" \
    -n "jq: peak and mean per user" "jq -nR '[inputs | fromjson?] | group_by(.user) | map({user: .[0].user, peak: (map(.memory_pct)|max), mean: (map(.memory_pct)|add/length)})' $H" \
    >/dev/null
cat "$W/stats.md"

# --- ds01 monitor: idle cost with 1,000 slices, /metrics with 1,000 users ---
./scripts/bench-monitor.sh

# --- ds01 top: what an interactive view costs on 1,000 real slices (root only) ---
if [ "$(id -u)" = 0 ]; then
    ./scripts/bench-top-interactive.sh "$B"
else
    echo "skipped: scripts/bench-top-interactive.sh makes real cgroups and needs root"
fi
