#!/bin/bash
# The CPU an interactive `ds01 top` costs: 1,000 real user slices with a container
# scope each in this host's cgroupfs (root; hybrid or pure cgroup v2), `ds01 top`
# in a detached tmux pane (200x50 unless TOP_SIZE=WxH), CPU time from
# /proc/<pid>/stat over SECS seconds (default 60), then its peak RSS. The slices
# are removed afterwards. Usage: scripts/bench-top-interactive.sh [ds01 binary]
set -euo pipefail
B=$(realpath "${1:-target/release/ds01}")
SECS=${SECS:-60}
SIZE=${TOP_SIZE:-200x50}
[ "$(id -u)" = 0 ] || { echo "needs root (makes real cgroups)" >&2; exit 2; }
command -v tmux >/dev/null || { echo "needs tmux" >&2; exit 2; }
if [ -d /sys/fs/cgroup/unified ]; then
    TREES="/sys/fs/cgroup/unified /sys/fs/cgroup/memory /sys/fs/cgroup/pids"
    ROOT=/sys/fs/cgroup/unified/ds01.slice
else
    TREES=/sys/fs/cgroup
    ROOT=/sys/fs/cgroup/ds01.slice
fi
[ ! -e "$ROOT" ] || { echo "$ROOT exists: not touching a real ds01 tree" >&2; exit 2; }
SOCK=$(mktemp -u /tmp/ds01-top-bench.XXXXXX)
cleanup() {
    tmux -S "$SOCK" kill-server 2>/dev/null || true
    for _ in 1 2 3 4 5; do
        for t in $TREES; do
            [ -d "$t/ds01.slice" ] && find "$t/ds01.slice" -depth -type d -exec rmdir {} + 2>/dev/null
        done
        sleep 0.3
    done
    for t in $TREES; do [ ! -d "$t/ds01.slice" ] || echo "note: could not remove $t/ds01.slice" >&2; done
}
trap cleanup EXIT
for t in $TREES; do
    for i in $(seq 0 999); do
        mkdir -p "$t/ds01.slice/ds01-bench.slice/ds01-bench-user$(printf %04d "$i").slice/docker-$(printf %064x "$i").scope"
    done
done
tmux -S "$SOCK" new-session -d -x "${SIZE%x*}" -y "${SIZE#*x}" \
    "DS01_CGROUP_ROOT=$ROOT DS01_EVENTS_LOG=/nonexistent DS01_STATE_DIR=/nonexistent $B top --interval 1s"
sleep 3
P=$(pgrep -f "^$B top" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$P/stat"; }
T0=$(ticks)
sleep "$SECS"
T1=$(ticks)
HZ=$(getconf CLK_TCK)
awk -v a="$T0" -v b="$T1" -v hz="$HZ" -v s="$SECS" \
    'BEGIN { printf "ds01 top, 1,000 real slices, 1 s refresh, %d s: %.2f %% of a core\n", s, (b - a) * 100 / hz / s }'
grep VmHWM "/proc/$P/status"
tmux -S "$SOCK" capture-pane -p | head -3
