#!/bin/bash
# The real-kernel scenario, run inside the guest by ds01-scenario.service (systemd
# is PID 1, pure cgroup v2, dockerd with the systemd driver). Every check prints
# PASS or FAIL with the evidence the guest saw; the last line is
# VMTEST-RESULT: PASS|FAIL. Results go back through the 9p share.
set -u
H=/mnt/host
OUT=$H/results/scenario.log
exec > >(tee -a "$OUT" >/dev/console) 2>&1
CG=/sys/fs/cgroup
ALICE=$CG/ds01.slice/ds01-student.slice/ds01-student-alice.slice
FAILS=0
CHECKS=0
pass() { CHECKS=$((CHECKS + 1)); echo "PASS  $1"; shift; for e in "$@"; do echo "        $e"; done; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL  $1"; shift; for e in "$@"; do echo "        $e"; done; }
# check NAME EXPECTED ACTUAL [evidence...]
check() { if [ "$2" = "$3" ]; then pass "$1" "got: $3" "${@:4}"; else fail "$1" "expected: $2" "got: $3" "${@:4}"; fi; }
step() { echo; echo "== $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }
as() { local u=$1; shift; su -s /bin/sh "$u" -c "$*"; }
oom_events() { grep -c '"event_type":"resource.oom_kill"' /var/log/ds01/events.jsonl 2>/dev/null || echo 0; }

step "setup: kernel $(uname -r), $(systemctl --version | head -1), $(docker --version)"
out=$(dpkg -i $H/ds01.deb 2>&1); rc=$?
check "dpkg -i ds01.deb" 0 "$rc" "$(echo "$out" | tail -3)"
check "the package enabled the collector timer" enabled "$(systemctl is-enabled ds01-collect.timer 2>&1)"
check "the event log is appendable by the docker group" "664 root docker" "$(stat -c '%a %U %G' /var/log/ds01/events.jsonl)"
check "ds01-events link" /usr/bin/ds01-events "$(command -v ds01-events)"
check "man page installed" 1 "$(ls /usr/share/man/man1/ds01.1* 2>/dev/null | wc -l)"
out=$(ds01 install --docker-wrapper 2>&1)
check "the docker wrapper opt-in link" /usr/bin/ds01 "$(readlink /usr/local/bin/docker)" "$out"
cp -r $H/etc/ds01 /etc/
check "cgroup v2 only" cgroup2fs "$(stat -fc %T $CG)"
check "docker uses the systemd cgroup driver" systemd "$(/usr/bin/docker info -f '{{.CgroupDriver}}' 2>&1)"
/usr/bin/docker import $H/image.tar ds01-test:latest >/dev/null && pass "test image imported" || fail "docker import"

step "1. config check, slices apply, kernel limits"
out=$(ds01 config check 2>&1); rc=$?
check "ds01 config check exits 0" 0 "$rc" "$out"
out=$(ds01 slices apply 2>&1); rc=$?
check "ds01 slices apply exits 0 (daemon-reload by systemd)" 0 "$rc" "$(echo "$out" | tail -3)"
out=$(ds01 slices apply 2>&1)
check "second apply changes nothing" 1 "$(echo "$out" | grep -c 'nothing to do')" "$out"
systemctl start ds01-student-h_baker.slice ds01-admin-boss.slice
HB=$CG/ds01.slice/ds01-student.slice/ds01-student-h_baker.slice
check "h.baker slice (sanitized name) memory.max = 384M" 402653184 "$(cat $HB/memory.max 2>&1)"
check "h.baker memory.high = 360M" 377487360 "$(cat $HB/memory.high 2>&1)"
check "h.baker cpu.max = 150%" "150000 100000" "$(cat $HB/cpu.max 2>&1)"
check "h.baker pids.max = 2048" 2048 "$(cat $HB/pids.max 2>&1)"
check "boss (admin, no aggregate) memory.max" max "$(cat $CG/ds01.slice/ds01-admin.slice/ds01-admin-boss.slice/memory.max 2>&1)"
systemctl stop ds01-student-h_baker.slice ds01-admin-boss.slice

step "2. alice runs containers through the wrapper"
ds01 collect >/dev/null 2>&1   # the OOM baseline, before anything ran
out=$(as alice "docker run -d --name alice-c1 --network none ds01-test:latest hog 120 hold" 2>&1); rc=$?
check "alice: docker run through the wrapper exits 0" 0 "$rc" "$out"
pid=$(/usr/bin/docker inspect -f '{{.State.Pid}}' alice-c1 2>&1)
cg=$(cat /proc/$pid/cgroup 2>&1)
case "$cg" in
    0::/ds01.slice/ds01-student.slice/ds01-student-alice.slice/docker-*.scope) pass "alice-c1 runs under alice's slice" "$cg" ;;
    *) fail "alice-c1 runs under alice's slice" "/proc/$pid/cgroup: $cg" ;;
esac
check "label ds01.user" alice "$(/usr/bin/docker inspect -f '{{index .Config.Labels "ds01.user"}}' alice-c1)"
check "label ds01.container_type" docker "$(/usr/bin/docker inspect -f '{{index .Config.Labels "ds01.container_type"}}' alice-c1)"
check "default --memory=320m applied" 335544320 "$(/usr/bin/docker inspect -f '{{.HostConfig.Memory}}' alice-c1)"
check "alice slice memory.max = 384M" 402653184 "$(cat $ALICE/memory.max 2>&1)"
check "alice slice cpu.max = 150%" "150000 100000" "$(cat $ALICE/cpu.max 2>&1)"
check "alice slice pids.max = 2048" 2048 "$(cat $ALICE/pids.max 2>&1)"
for i in $(seq 1 60); do
    [ "$(cat $ALICE/memory.current)" -gt $((100 << 20)) ] && break
    sleep 0.5
done
echo "        alice memory.current: $(cat $ALICE/memory.current)"
out=$(as alice "docker run -d --name alice-c2 --memory 300m --network none ds01-test:latest sleep 600" 2>&1); rc=$?
check "a second container beyond alice's aggregate memory is refused" 1 "$rc" "$out"
check "the refusal says why" 1 "$(echo "$out" | grep -c 'container not started')"
check "quota.memory_exceeded logged" 1 "$(grep -c '"event_type":"quota.memory_exceeded"' /var/log/ds01/events.jsonl)"
check "alice-c2 was never created" "" "$(/usr/bin/docker ps -aq -f name=alice-c2)"
out=$(as alice "docker run --rm --cgroup-parent=system.slice ds01-test:latest true" 2>&1); rc=$?
check "alice may not choose --cgroup-parent" 1 "$rc" "$(echo "$out" | head -3)"
out=$(as boss "docker run --rm --network none --cgroup-parent=ds01-admin-boss.slice ds01-test:latest cat /proc/self/cgroup" 2>&1); rc=$?
check "boss (admin) may choose --cgroup-parent" 0 "$rc" "$out"

step "3. an OOM kill in alice's container, seen by the collector"
out=$(as alice "docker exec alice-c1 hog 400" 2>&1); rc=$?
check "the hog is OOM-killed (exit 137)" 137 "$rc" "$(echo "$out" | tail -2)"
echo "        alice memory.events: $(tr '\n' ' ' <$ALICE/memory.events)"
out=$(ds01 collect --verbose 2>&1); rc=$?
check "ds01 collect exits 0" 0 "$rc" "$out"
check "exactly one resource.oom_kill event" 1 "$(oom_events)" "$(grep oom_kill /var/log/ds01/events.jsonl)"
check "the event names the container" 1 "$(grep '"event_type":"resource.oom_kill"' /var/log/ds01/events.jsonl | grep -c '"container":"alice-c1"')"
check "the stats log has alice's line" 1 "$(grep -c '"user":"alice"' /var/log/ds01/resource-stats.log | awk '{print ($1 >= 1)}')" "$(grep '"user":"alice"' /var/log/ds01/resource-stats.log | tail -1)"
ds01 collect >/dev/null 2>&1
check "a second collect adds none" 1 "$(oom_events)"

step "4. alice's containers stop, her slice goes away, a new OOM kill counts again"
/usr/bin/docker rm -f alice-c1 >/dev/null
for i in $(seq 1 40); do [ -d $ALICE ] || break; sleep 0.5; done
if [ -d $ALICE ]; then
    echo "        slice still present after the last container: stopping it"
    systemctl stop ds01-student-alice.slice
fi
check "alice's slice cgroup is gone" absent "$([ -d $ALICE ] && echo present || echo absent)"
ds01 collect >/dev/null 2>&1
out=$(as alice "docker run --name alice-c3 --network none ds01-test:latest hog 400" 2>&1); rc=$?
check "the new container's hog is OOM-killed" 137 "$rc" "$(echo "$out" | tail -1)"
echo "        new alice memory.events: $(tr '\n' ' ' <$ALICE/memory.events 2>&1)"
ds01 collect >/dev/null 2>&1
check "the kill in the re-created slice is a new event" 2 "$(oom_events)" "$(grep oom_kill /var/log/ds01/events.jsonl | tail -1)"

step "5. the event log"
out=$(ds01 events --user alice --type resource 2>&1)
check "ds01 events --user alice --type resource shows both kills" 2 "$(echo "$out" | grep -c resource.oom_kill)" "$out"
out=$(as alice "ds01-events --user alice --type quota" 2>&1)
check "alice can read her refusal with ds01-events" 1 "$(echo "$out" | grep -c quota.memory_exceeded)" "$out"

step "6. the greeting, as alice"
out=$(as alice "ds01 greet --plain" 2>&1); rc=$?
check "ds01 greet as alice exits 0" 0 "$rc" "$out"
check "the greeting names her group and quota" 1 "$(echo "$out" | grep -c 'alice (group student)')"
check "the greeting mentions the OOM kills" 1 "$(echo "$out" | grep -c 'killed for exceeding memory in the last 24h')"

step "7. ds01 check on the real chain: every check PASS, none skipped"
as alice "docker run -d --name alice-c4 --network none ds01-test:latest sleep 600" >/dev/null 2>&1
ds01 collect >/dev/null 2>&1
out=$(ds01 check --image ds01-test:latest 2>&1); rc=$?
check "ds01 check exits 0" 0 "$rc" "$out"
check "ds01 check: 12/12 passed, none skipped" 1 "$(echo "$out" | grep -c 'Results: 12/12 passed, 0 failed, 0 skipped')"
systemctl start ds01-collect.service
check "the installed collect unit runs (hardened) and succeeds" 0 "$(systemctl show -p ExecMainStatus --value ds01-collect.service)" "$(journalctl -u ds01-collect.service -n 5 --no-pager 2>&1 | tail -3)"

step "7b. ds01 monitor instead of the timer: an OOM kill logged within a second"
systemctl disable --now ds01-collect.timer >/dev/null 2>&1
systemctl start ds01-monitor.service
for i in $(seq 1 40); do journalctl -u ds01-monitor -o cat 2>/dev/null | grep -q 'ds01 monitor: watching' && break; sleep 0.5; done
check "ds01-monitor.service is running" active "$(systemctl is-active ds01-monitor.service)" "$(journalctl -u ds01-monitor -o cat -n 3 --no-pager 2>&1)"
before=$(oom_events)
as alice "docker exec alice-c4 hog 400" >/dev/null 2>&1
returned=$(date -u +%s.%N)
sleep 1
check "the monitor logged the kill (one new event, source monitor)" "$((before + 1))" "$(oom_events)" "$(grep '"source":"monitor"' /var/log/ds01/events.jsonl | tail -1)"
check "the monitor's event names the container" 1 "$(grep '"source":"monitor"' /var/log/ds01/events.jsonl | tail -1 | grep -c '"container":"alice-c4"')"
ev_ts=$(grep '"source":"monitor"' /var/log/ds01/events.jsonl | tail -1 | sed 's/.*"timestamp":"\([^"]*\)".*/\1/')
ev_s=$(date -u -d "$ev_ts" +%s.%N 2>/dev/null || echo 0)
check "the event was written within 1 s of the kill (by the time docker exec returned + 1 s)" 1 "$(awk -v e="$ev_s" -v r="$returned" 'BEGIN{print (e > 0 && e <= r + 1.0) ? 1 : 0}')" "event at $ev_ts, docker exec returned at $(date -u -d @$returned +%H:%M:%S.%N), difference $(awk -v e="$ev_s" -v r="$returned" 'BEGIN{printf "%.3f", e - r}') s"

step "7c. the monitor's /metrics and PSI triggers on the real kernel, under the shipped unit"
http_get() { exec 3<>/dev/tcp/127.0.0.1/9101 || return; printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3; cat <&3; exec 3<&-; }
metrics=$(http_get /metrics)
check "/metrics answers on 127.0.0.1:9101 (the shipped unit's --listen)" 1 "$(echo "$metrics" | grep -c '^HTTP/1.1 200')" "$(echo "$metrics" | head -3)"
check "/metrics: alice's memory, read from her slice" 1 "$(echo "$metrics" | grep -c '^ds01_user_memory_current_bytes{user="alice",group="student"} [1-9]')" "$(echo "$metrics" | grep '^ds01_user_memory_current_bytes' | head -3)"
check "/metrics: alice's kernel limit and configured limit agree (384M)" 2 "$(echo "$metrics" | grep -E '^ds01_user_(limit_)?memory_max_bytes\{user="alice",group="student"\} 402653184(\.0)?$' | wc -l)" "$(echo "$metrics" | grep 'memory_max_bytes{user="alice"')"
check "/metrics: the OOM kills as a counter" 1 "$(echo "$metrics" | grep -c '^ds01_user_memory_events_oom_kill_total{user="alice",group="student"} [1-9]')"
trig=$(echo "$metrics" | sed -n 's/^ds01_monitor_pressure_triggers \([0-9]*\).*/\1/p')
check "PSI triggers armed on every slice (3 per slice) despite the unit's hardening" 1 "$([ "${trig:-0}" -ge 3 ] && echo 1 || echo 0)" "ds01_monitor_pressure_triggers ${trig:-none}" "$(journalctl -u ds01-monitor -o cat --no-pager | grep -m2 -E 'watching|pressure')"
check "/healthz says ok" 1 "$(http_get /healthz | grep -c '^ok')"
as alice "docker exec -d alice-c4 sh -c 'for i in 1 2 3 4; do (while :; do :; done) & done; sleep 12; kill 0'" >/dev/null 2>&1
p_start=$(date +%s.%N)
for i in $(seq 1 60); do grep '"event_type":"resource.pressure"' /var/log/ds01/events.jsonl 2>/dev/null | grep -q '"resource":"cpu"' && break; sleep 0.5; done
p_took=$(awk -v s="$p_start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}')
pev=$(grep '"event_type":"resource.pressure"' /var/log/ds01/events.jsonl 2>/dev/null | grep '"user":"alice"' | grep '"resource":"cpu"')
check "four spinning shells in alice's 1-CPU container: one resource.pressure event (cpu, some)" 1 "$(echo "$pev" | grep -c '"kind":"some"')" "after ${p_took} s: $pev"
check "the event uses the config's threshold (20% of 2 s = 400 ms)" 1 "$(echo "$pev" | grep -c '"threshold_ms":400')"
sleep 6
check "no second event for the same pressure within the cooldown" 1 "$(grep '"event_type":"resource.pressure"' /var/log/ds01/events.jsonl | grep '"user":"alice"' | grep -c '"resource":"cpu"')"
systemctl stop ds01-monitor.service

step "8. upgrade keeps config and state; purge removes state"
echo "# local edit" >>/etc/ds01/resource-limits.yaml
sum_before=$(md5sum /etc/ds01/resource-limits.yaml | cut -c1-32)
counts_before=$(cat /var/lib/ds01/resource-stats/oom-counts.json 2>&1)
out=$(dpkg -i --force-confold $H/ds01.deb 2>&1); rc=$?
check "reinstalling the package (upgrade path) succeeds" 0 "$rc" "$(echo "$out" | tail -2)"
check "the edited config is kept" "$sum_before" "$(md5sum /etc/ds01/resource-limits.yaml | cut -c1-32)"
check "the OOM state is kept" "$counts_before" "$(cat /var/lib/ds01/resource-stats/oom-counts.json 2>&1)"
/usr/bin/docker rm -f $(/usr/bin/docker ps -aq) >/dev/null 2>&1
ds01 install --docker-wrapper --remove >/dev/null
out=$(dpkg --purge ds01 2>&1); rc=$?
check "dpkg --purge ds01" 0 "$rc" "$(echo "$out" | tail -2)"
check "purge removed the state" absent "$([ -e /var/lib/ds01 ] && echo present || echo absent)"

echo
echo "== $CHECKS checks, $FAILS failed"
if [ "$FAILS" = 0 ]; then echo "VMTEST-RESULT: PASS"; else echo "VMTEST-RESULT: FAIL"; fi
sync
