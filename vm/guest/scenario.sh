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
check "the package's collector is ds01-monitor (enabled, running), not the timer" "enabled active disabled" "$(systemctl is-enabled ds01-monitor.service 2>&1) $(systemctl is-active ds01-monitor.service 2>&1) $(systemctl is-enabled ds01-collect.timer 2>&1)"
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
sleep 1
last_oom=$(grep '"event_type":"resource.oom_kill"' /var/log/ds01/events.jsonl | tail -1)
check "on the default install, the kill of alice-c3's main process names the container (read while its scope existed, or the one that went)" 1 "$(echo "$last_oom" | grep -c '"container":"alice-c3"')" "$last_oom"
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
# /home is on the root file system (suid, dev): bind-roots names the fix; apply it.
out=$(ds01 check --only bind-roots 2>&1)
check "ds01 check bind-roots: FAIL on a suid /home, with the fstab line" 1 "$(echo "$out" | grep -c 'FAIL.*/home /home none bind,nosuid,nodev 0 0')" "$out"
echo "/home /home none bind,nosuid,nodev 0 0" >>/etc/fstab
mount /home
check "after the fix, /home is nosuid,nodev" "nosuid nodev" "$(findmnt -no OPTIONS /home | tr ',' '\n' | grep -E '^(nosuid|nodev)$' | tr '\n' ' ' | sed 's/ $//')"
as alice "docker run -d --name alice-c4 --network none ds01-test:latest sleep 600" >/dev/null 2>&1
ds01 collect >/dev/null 2>&1
out=$(ds01 check --image ds01-test:latest 2>&1); rc=$?
check "ds01 check exits 0" 0 "$rc" "$out"
check "ds01 check: 13/15 passed, docker-proxy (not switched on yet) and gpu (no GPU here) skipped" "1 1" "$(echo "$out" | grep -c 'Results: 13/15 passed, 0 failed, 2 skipped') $(echo "$out" | grep -c 'SKIP.*gpu - no GPUs: no NVIDIA driver')" "$(echo "$out" | grep -v PASS)"
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
check "/metrics answers on 127.0.0.1:9101 (the shipped unit's --listen)" 1 "$(echo "$metrics" | grep -c '^HTTP/1.[01] 200')" "$(echo "$metrics" | head -3)"
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

step "7d. ds01 proxy owns the Docker socket: real clients as non-admins, none of them the wrapper"
ds01 install --docker-wrapper --remove >/dev/null
/usr/bin/docker rm -f $(/usr/bin/docker ps -aq) >/dev/null 2>&1
out=$(ds01 install --proxy 2>&1); rc=$?
check "ds01 install --proxy" 0 "$rc" "$out"
for i in $(seq 1 20); do /usr/bin/docker version >/dev/null 2>&1 && break; sleep 0.5; done
check "ds01-proxy.socket listens on /run/docker.sock" active "$(systemctl is-active ds01-proxy.socket)"
check "the daemon's own socket is root's only" "600 root" "$(stat -c '%a %U' /run/docker-engine.sock 2>&1)"
out=$(as alice "python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"/run/docker-engine.sock\")'" 2>&1); rc=$?
check "alice cannot open the daemon's socket" 1 "$rc" "$(echo "$out" | tail -1)"
out=$(ds01 check --only docker-proxy 2>&1)
check "ds01 check --only docker-proxy: PASS" 1 "$(echo "$out" | grep -c 'PASS')" "$out"
in_slice() { # USER CONTAINER -> PASS if the container's cgroup is under the user's slice
    local p cg; p=$(/usr/bin/docker inspect -f '{{.State.Pid}}' "$2" 2>&1); cg=$(cat /proc/$p/cgroup 2>&1)
    case "$cg" in 0::/ds01.slice/ds01-student.slice/ds01-student-$1.slice/docker-*.scope) echo yes ;; *) echo "no: $cg" ;; esac
}
label() { /usr/bin/docker inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>&1; }

# The docker CLI, straight at the socket.
out=$(as alice "/usr/bin/docker run -d --name p-cli --network none ds01-test:latest hog 120 hold" 2>&1); rc=$?
check "docker CLI (/usr/bin/docker run -d) as alice exits 0" 0 "$rc" "$out"
check "p-cli sits under alice's slice" yes "$(in_slice alice p-cli)"
check "p-cli labels: ds01.user / container_type" "alice docker" "$(label p-cli ds01.user) $(label p-cli ds01.container_type)"
check "p-cli got alice's default memory (320m)" 335544320 "$(/usr/bin/docker inspect -f '{{.HostConfig.Memory}}' p-cli)"
cat >/tmp/ds01_ttyclient.py <<'PY'
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv("/usr/bin/docker", ["docker"] + sys.argv[1:])
os.write(fd, b"echo round-trip-$((6*7)); exit\n")
out, end = b"", time.time() + 90
while time.time() < end:
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    out += d
os.waitpid(pid, 0)
print(out.decode(errors="replace"))
PY
chmod 644 /tmp/ds01_ttyclient.py
out=$(as alice "python3 /tmp/ds01_ttyclient.py run --rm -it --memory 16m --network none ds01-test:latest sh" 2>&1)
check "docker run -it: a round trip through the TTY (attach upgrade)" 1 "$(echo "$out" | grep -c 'round-trip-42')" "$(echo "$out" | tail -3)"
out=$(as alice "python3 /tmp/ds01_ttyclient.py exec -it p-cli sh" 2>&1)
check "docker exec -it: a round trip through the TTY" 1 "$(echo "$out" | grep -c 'round-trip-42')" "$(echo "$out" | tail -3)"
as alice "/usr/bin/docker run -d --name p-log --memory 16m --network none ds01-test:latest sh -c 'for i in 1 2 3; do echo tick\$i; sleep 1; done'" >/dev/null 2>&1
out=$(as alice "timeout 30 /usr/bin/docker logs -f p-log" 2>&1)
check "docker logs -f streams to the end" "tick1 tick2 tick3" "$(echo $out)"
out=$(as alice "cd && echo payload-\$RANDOM > f.txt && /usr/bin/docker cp f.txt p-cli:/ && /usr/bin/docker cp p-cli:/f.txt back.txt && cmp f.txt back.txt && echo same" 2>&1)
check "docker cp into and out of a container" same "$(echo "$out" | tail -1)"
out=$(as alice "mkdir -p ~/ctx && printf 'FROM ds01-test:latest\nRUN echo built > /built\n' > ~/ctx/Dockerfile && /usr/bin/docker build --network none -q -t alice-built ~/ctx" 2>&1); rc=$?
check "docker build of a small context (build steps in alice's slice)" 0 "$rc" "$(echo "$out" | tail -2)"
grep -q '"event_type":"docker.cgroup_inject".*"source":"docker-proxy"' /var/log/ds01/events.jsonl && pass "docker.cgroup_inject logged by the proxy" || fail "docker.cgroup_inject by the proxy"

# The Python SDK.
for i in $(seq 1 60); do [ "$(cat $ALICE/memory.current)" -gt $((100 << 20)) ] && break; sleep 0.5; done
out=$(as alice "python3 -c '
import docker
c = docker.from_env()
try:
    c.containers.run(\"ds01-test:latest\", \"sleep 600\", detach=True, name=\"p-big\", network_mode=\"none\", mem_limit=\"300m\")
    print(\"CREATED\")
except docker.errors.APIError as e:
    print(\"REFUSED\", e)
'" 2>&1)
check "Python SDK: an over-quota create is refused" 1 "$(echo "$out" | grep -c '^REFUSED.*container not started')" "$(echo "$out" | head -4)"
check "... with the quota.memory_exceeded event from the proxy" 1 "$(grep '"event_type":"quota.memory_exceeded"' /var/log/ds01/events.jsonl | grep -c '"source":"docker-proxy"')"
check "... and no container" "" "$(/usr/bin/docker ps -aq -f name=p-big)"
out=$(as alice "python3 -c '
import docker
c = docker.from_env()
print(c.containers.run(\"ds01-test:latest\", \"sleep 600\", detach=True, name=\"p-sdk\", network_mode=\"none\", mem_limit=\"32m\").name)
'" 2>&1)
check "Python SDK: a container within quota is created" p-sdk "$(echo "$out" | tail -1)"
check "p-sdk sits under alice's slice" yes "$(in_slice alice p-sdk)"
check "p-sdk's container_type is api" api "$(label p-sdk ds01.container_type)"
/usr/bin/docker rm -f p-sdk >/dev/null 2>&1

# docker-compose (Debian's, v1: itself an SDK client).
as alice "mkdir -p ~/pj && printf 'version: \"2.4\"\nservices:\n  web:\n    image: ds01-test:latest\n    command: sleep 600\n    network_mode: none\n    mem_limit: 16m\n  worker:\n    image: ds01-test:latest\n    command: sleep 600\n    network_mode: none\n    mem_limit: 16m\n' > ~/pj/docker-compose.yml"
out=$(as alice "cd ~/pj && docker-compose -p pj up -d" 2>&1); rc=$?
check "docker-compose up -d (two services) as alice" 0 "$rc" "$(echo "$out" | tail -2)"
for c in pj_web_1 pj_worker_1; do
    check "$c sits under alice's slice, type compose" "yes compose" "$(in_slice alice $c) $(label $c ds01.container_type)"
done
as alice "cd ~/pj && docker-compose -p pj down" >/dev/null 2>&1

# bob cannot see or touch alice's containers, through any client.
check "bob: docker ps -a lists none of alice's" 0 "$(as bob '/usr/bin/docker ps -aq' 2>/dev/null | wc -l)"
for cmd in "inspect p-cli" "exec p-cli true" "stop p-cli" "rm -f p-cli" "logs p-cli"; do
    out=$(as bob "/usr/bin/docker $cmd" 2>&1); rc=$?
    check "bob: docker $cmd says 'No such …' and p-cli is untouched" "1 1" "$(echo "$out" | grep -ci 'no such' | awk '{print ($1 >= 1)}') $(/usr/bin/docker inspect -f '{{.State.Running}}' p-cli 2>/dev/null | grep -c true)" "rc=$rc: $out"
done
out=$(as bob "python3 -c '
import docker
c = docker.from_env()
try:
    c.containers.get(\"p-cli\"); print(\"FOUND\")
except docker.errors.NotFound:
    print(\"NOTFOUND\")
print(len(c.containers.list(all=True)))
'" 2>&1)
check "bob (Python SDK): alice's container does not exist; he lists 0" "NOTFOUND 0" "$(echo $out)"
as alice "/usr/bin/docker create --name p-stopped --memory 16m --network none ds01-test:latest true" >/dev/null 2>&1
out=$(as bob "/usr/bin/docker container prune -f" 2>&1)
check "bob's docker container prune leaves alice's stopped container" 1 "$(/usr/bin/docker ps -aq -f name=p-stopped | wc -l)" "$out"
as alice "/usr/bin/docker volume create av" >/dev/null 2>&1
out=$(as bob "/usr/bin/docker run --rm --network none -v av:/x ds01-test:latest true" 2>&1); rc=$?
check "bob cannot mount alice's named volume" 1 "$([ $rc != 0 ] && echo 1 || echo 0)" "$out"
out=$(as bob "/usr/bin/docker volume rm av" 2>&1); rc=$?
check "bob cannot remove alice's named volume" 1 "$([ $rc != 0 ] && /usr/bin/docker volume ls -q | grep -c '^av$')" "$out"
check "boss (admin) sees alice's containers" 1 "$(as boss '/usr/bin/docker ps -a --format {{.Names}}' 2>&1 | grep -c '^p-cli$')"

# A broken config does not lift anyone's limits.
cp /etc/ds01/resource-limits.yaml /tmp/good.yaml
echo "groups: [broken" >>/etc/ds01/resource-limits.yaml
sleep 3
out=$(as alice "/usr/bin/docker run -d --name p-broken --network none --memory 16m ds01-test:latest sleep 600" 2>&1)
check "with a broken config, alice's container still lands in her slice" yes "$(in_slice alice p-broken)" "$out"
out=$(as alice "/usr/bin/docker run --rm --network none --cgroup-parent=system.slice ds01-test:latest true" 2>&1); rc=$?
check "with a broken config, --cgroup-parent is still refused" 1 "$([ $rc != 0 ] && echo 1 || echo 0)" "$(echo "$out" | head -2)"
check "config.invalid logged" 1 "$(grep -c '"event_type":"config.invalid"' /var/log/ds01/events.jsonl | awk '{print ($1 >= 1)}')"
cp /tmp/good.yaml /etc/ds01/resource-limits.yaml
/usr/bin/docker rm -f p-broken >/dev/null 2>&1

# 7e. The host-escape policy (issue #15): as alice, through the CLI and the SDK.
denied() { awk '/"event_type":"security.denied"/ {n++} END {print n+0}' /var/log/ds01/events.jsonl 2>/dev/null || echo 0; }
DISK=$(lsblk -ndpo NAME -e 7,11 | head -1)
as alice "ln -sfn /etc /home/alice/etc-link"
as bob "/usr/bin/docker volume create bobvol" >/dev/null 2>&1
try_refused() { # LABEL NEEDLE DOCKER-ARGS...
    local label=$1 needle=$2; shift 2
    local before out rc n; before=$(denied)
    out=$(as alice "/usr/bin/docker run --name esc-x --network none --memory 16m $* ds01-test:latest true" 2>&1); rc=$?
    n=$(/usr/bin/docker ps -aq --filter name=esc-x | wc -l)
    if [ $rc != 0 ] && [ "$n" = 0 ] && echo "$out" | grep -qF -- "$needle"; then pass "refused: $label"; else fail "refused: $label" "rc=$rc containers=$n $(echo "$out" | head -2)"; fi
    /usr/bin/docker rm -f esc-x >/dev/null 2>&1
    [ "$needle" = "volume" ] || [ "$needle" = "cgroup" ] || [ "$(denied)" -gt "$before" ] || fail "no security.denied event for $label"
}
try_refused "--privileged" "--privileged refused" --privileged
try_refused "--cap-add SYS_ADMIN" "--cap-add SYS_ADMIN refused" --cap-add SYS_ADMIN
try_refused "--pid host" "--pid host refused" --pid host
try_refused "--security-opt seccomp=unconfined" "seccomp=unconfined refused" --security-opt seccomp=unconfined
try_refused "--device $DISK" "--device $DISK refused" --device $DISK
try_refused "-v /:/host" "outside the places you may mount from" -v /:/host
try_refused "-v /etc:/x" "outside the places you may mount from" -v /etc:/x
try_refused "a bind of bob's home" "outside the places you may mount from" -v /home/bob:/b
try_refused "a symlink in her home to /etc" "it resolves to /etc" -v /home/alice/etc-link:/e
try_refused "the Docker socket" "Docker socket" -v /var/run/docker.sock:/s
try_refused "--cgroup-parent" "cgroup" --cgroup-parent=system.slice
try_refused "bob's named volume" "volume" -v bobvol:/v
out=$(as alice "python3 -c 'import docker; docker.from_env().containers.create(\"ds01-test:latest\", \"true\", name=\"esc-sdk\", privileged=True)'" 2>&1)
check "SDK: privileged=True refused with the message" 1 "$(echo "$out" | grep -c 'privileged refused')" "$(echo "$out" | tail -1)"
out=$(as alice "python3 -c 'import docker; docker.from_env().containers.create(\"ds01-test:latest\", \"true\", name=\"esc-sdk\", volumes=[\"/:/host\"])'" 2>&1)
check "SDK: a bind of / refused" 1 "$(echo "$out" | grep -c 'outside the places you may mount from')" "$(echo "$out" | tail -1)"
check "SDK: no container created" 0 "$(/usr/bin/docker ps -aq --filter name=esc-sdk | wc -l)"
# The two classic escalations, end to end, with her own home bind-mounted.
as alice "cp /usr/bin/id /home/alice/myid"
out=$(as alice "/usr/bin/docker run --rm --network none --memory 16m -v /home/alice:/h ds01-test:latest sh -c 'chown 0:0 /h/myid && chmod 4755 /h/myid && ls -l /h/myid'" 2>&1)
check "root in the container made a setuid-root copy in her home" 1 "$(echo "$out" | grep -Ec '^-rwsr-xr-x +1 +(0|root) +(0|root) ')" "$out"
check "run on the host, it prints alice's uid, not 0" "$(id -u alice)" "$(as alice '/home/alice/myid -u' 2>&1)"
read -r MAJ MIN <<<"$(stat -c '%t %T' "$DISK")"
out=$(as alice "/usr/bin/docker run --rm --network none --memory 16m -v /home/alice:/h ds01-test:latest mknod /h/disk b $((16#$MAJ)) $((16#$MIN))" 2>&1)
check "root in the container made a block-device node of $DISK in her home" b "$(stat -c '%F' /home/alice/disk 2>&1 | cut -c1)" "$out"
out=$(as alice "head -c 512 /home/alice/disk" 2>&1); rc=$?
check "alice cannot read the disk through it on the host (nodev)" 1 "$([ $rc != 0 ] && echo 1 || echo 0)" "$(echo "$out" | head -1)"
rm -f /home/alice/disk /home/alice/myid
out=$(as boss "/usr/bin/docker run --rm --network none --privileged --pid host -v /:/host ds01-test:latest true" 2>&1); rc=$?
check "an admin keeps full Docker (--privileged --pid host -v /:/host)" 0 "$rc" "$out"

# Restarts lose no container.
pid_before=$(/usr/bin/docker inspect -f '{{.State.Pid}}' p-cli)
systemctl restart ds01-proxy.service
systemctl restart docker.service
for i in $(seq 1 40); do /usr/bin/docker inspect p-cli >/dev/null 2>&1 && break; sleep 0.5; done
check "after restarting the proxy and dockerd, p-cli still runs (same pid, live-restore)" "true $pid_before" "$(/usr/bin/docker inspect -f '{{.State.Running}} {{.State.Pid}}' p-cli 2>&1)"
check "and alice still reaches it through the proxy" 0 "$(as alice '/usr/bin/docker exec p-cli true' >/dev/null 2>&1; echo $?)"
out=$(ds01 install --proxy --remove 2>&1); rc=$?
check "ds01 install --proxy --remove" 0 "$rc" "$out"
for i in $(seq 1 20); do /usr/bin/docker version >/dev/null 2>&1 && break; sleep 0.5; done
check "afterwards /run/docker.sock is dockerd's again (check: SKIP)" 1 "$(ds01 check --only docker-proxy 2>&1 | grep -c SKIP)"

step "7f. lifecycle: idle and runtime limits act, warnings first (minute-scale limits)"
cat >>/etc/ds01/resource-limits.yaml <<'YAML'
policies:
  idle_detection_window: 2
  grace_period_m: 0
  cpu_idle_threshold: 5
container_types:
  docker:
    idle_timeout_h: 0.01
    max_runtime_h: null
    sigterm_grace_s: 2
  compose:
    idle_timeout_h: null
    max_runtime_h: 0.01
    sigterm_grace_s: 2
user_overrides:
  alice:
    container_hold_after_stop_h: 0.01
YAML
out=$(ds01 config check 2>&1); rc=$?
check "the lifecycle config loads" 0 "$rc" "$out"
mkdir -p /etc/systemd/system/ds01-monitor.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/ds01 monitor --listen 127.0.0.1:9101 --interval 5s\n' >/etc/systemd/system/ds01-monitor.service.d/fast.conf
systemctl daemon-reload
systemctl restart ds01-monitor.service
# alice logged in on a terminal (login writes utmp); the typescript is what her terminal shows.
rm -f /tmp/alice-tty.log
# As over SSH (a pty of mode 0620): messages on. login(1) itself makes it 0600 (mesg n),
# which ds01 honours as write(1) does.
((sleep 2; echo 'mesg y'; sleep 400) | script -qfc "login -f alice" /tmp/alice-tty.log >/dev/null 2>&1 &)
for i in $(seq 1 20); do who -T | grep -q '^alice *+' && break; sleep 0.5; done
check "alice has a terminal session (utmp), messages on" 1 "$(who -T | grep -c '^alice *+')" "$(who -T)"
/usr/bin/docker rm -f $(/usr/bin/docker ps -aq) >/dev/null 2>&1
as alice "ds01 docker run -d --name lc-idle --network none --memory 32m ds01-test:latest sleep 600" >/dev/null 2>&1
as alice "ds01 docker run -d --name lc-busy --network none --memory 32m --cpus 0.2 ds01-test:latest sh -c 'while :; do :; done'" >/dev/null 2>&1
as alice "ds01 docker run -d --name lc-job --network none --memory 32m --label com.docker.compose.project=job ds01-test:latest sleep 600" >/dev/null 2>&1
as boss "ds01 docker run -d --name lc-prot --network none --memory 32m --label ds01.protected=true ds01-test:latest sleep 600" >/dev/null 2>&1
check "four lifecycle containers run (types: docker, docker, compose, docker)" "docker docker compose docker" "$(for c in lc-idle lc-busy lc-job lc-prot; do label $c ds01.container_type; done | tr '\n' ' ' | sed 's/ $//')"
lc_start=$(date +%s)
ev() { grep "\"event_type\":\"$1\"" /var/log/ds01/events.jsonl 2>/dev/null | grep "\"container\":\"$2\""; }
for i in $(seq 1 200); do
    ev maintenance.idle_kill lc-idle >/dev/null && ev maintenance.runtime_kill lc-job >/dev/null && ev maintenance.container_removed lc-idle >/dev/null && break
    sleep 1
done
took=$(( $(date +%s) - lc_start ))
echo "        after ${took} s: $(journalctl -u ds01-monitor -o cat --no-pager | grep -c '^lifecycle:') lifecycle lines in the journal"
journalctl -u ds01-monitor -o cat --no-pager | grep '^lifecycle' | tail -12 | sed 's/^/        /'
w=$(ev maintenance.idle_warning lc-idle)
check "lc-idle: one idle warning, before the stop" 1 "$(echo "$w" | grep -c .)" "$w"
check "the warning reached alice's terminal" 1 "$(grep -c 'lc-idle has been idle' /tmp/alice-tty.log 2>/dev/null)" "$(tr -d '\r' </tmp/alice-tty.log 2>/dev/null | grep -a ds01 | tail -3)"
k=$(ev maintenance.idle_kill lc-idle)
check "lc-idle stopped for idleness: maintenance.idle_kill (user, why, idle time)" 1 "$(echo "$k" | grep '"user":"alice"' | grep '"why":"idle for' | grep -c '"idle_s":')" "$k"
check "the warning came first" 1 "$(awk '/maintenance.idle_warning/ && /lc-idle/ {w=NR} /maintenance.idle_kill/ && /lc-idle/ {k=NR} END {print (w && k && w < k) ? 1 : 0}' /var/log/ds01/events.jsonl)"
rk=$(ev maintenance.runtime_kill lc-job)
check "lc-job (compose, 36 s max) stopped: maintenance.runtime_kill after two runtime warnings" "1 2" "$(echo "$rk" | grep -c '"runtime_s":') $(ev maintenance.runtime_warning lc-job | grep -c .)" "$rk"
rm_ev=$(ev maintenance.container_removed lc-idle)
check "lc-idle removed after its hold (maintenance.container_removed), gone from docker" "1 0" "$(echo "$rm_ev" | grep -c .) $(/usr/bin/docker ps -aq -f name=lc-idle | wc -l)" "$rm_ev"
check "lc-busy (spinning) still runs" true "$(/usr/bin/docker inspect -f '{{.State.Running}}' lc-busy 2>&1)"
check "lc-prot (admin's, ds01.protected) still runs, never warned" "true 0" "$(/usr/bin/docker inspect -f '{{.State.Running}}' lc-prot 2>&1) $(grep 'maintenance\.' /var/log/ds01/events.jsonl | grep -c 'lc-prot')"
check "the greeting shows alice the lifecycle alert" 1 "$(as alice 'ds01 greet --plain' 2>&1 | grep -c 'lc-idle has been idle')"
out=$(as alice "ds01 lifecycle --dry-run" 2>&1); rc=$?
check "ds01 lifecycle --dry-run as alice: her containers only, with the limits' sources" "0 1 0 1" "$rc $(echo "$out" | grep -c '^lc-busy ') $(echo "$out" | grep -c '^lc-prot') $(echo "$out" | grep -c 'container_types.docker.idle_timeout_h' | awk '{print ($1 >= 1)}')" "$out"
/usr/bin/docker rm -f lc-busy lc-job lc-prot >/dev/null 2>&1
pkill -f 'script -qfc login' 2>/dev/null; pkill -u alice 2>/dev/null
rm -f /etc/systemd/system/ds01-monitor.service.d/fast.conf
systemctl daemon-reload

step "7g. a real full file system under the logs (tmpfs)"
mkdir -p /mnt/full && mount -t tmpfs -o size=256k tmpfs /mnt/full
full() { ds01 collect --stats-log /mnt/full/stats.log --events-log /mnt/full/events.jsonl --state-dir /mnt/full/state "$@"; }
full >/dev/null 2>&1
# Leave 100 bytes in the log's last page, then fill the file system: the next
# pass fits only partly (a short write), exactly as on a nearly full disk.
size=$(stat -c %s /mnt/full/stats.log)
pad=$(( (3996 - size % 4096 + 4096) % 4096 ))
if [ "$pad" -gt 0 ]; then { head -c $((pad - 1)) /dev/zero | tr '\0' x; echo; } >>/mnt/full/stats.log; fi
dd if=/dev/zero of=/mnt/full/fill bs=4k >/dev/null 2>&1
before=$(md5sum </mnt/full/stats.log)
out=$(full 2>&1); rc=$?
check "ds01 collect on a full file system exits 1 and says so" "1 1" "$rc $(echo "$out" | grep -c 'no room to write')" "$out"
check "the stats log is unchanged and ends on a whole line" "$before 0a" "$(md5sum </mnt/full/stats.log) $(tail -c1 /mnt/full/stats.log | od -An -tx1 | tr -d ' ')"
rm -f /mnt/full/fill
out=$(full 2>&1); rc=$?
check "with room again, the next pass appends whole lines" "0 0" "$rc $(grep -vc '^{.*}$\|^x*$' /mnt/full/stats.log)" "$out"
umount /mnt/full

step "7h. GPU accounting: a recorded snapshot's pids attributed through the real /proc and cgroups"
# No GPU in the guest: NVML is replaced by a snapshot naming real pids (the snapshot
# tests cover NVML's side); attribution, holders, /metrics and the greeting are real.
# 7f's minute-scale idle limits are still in the config: the monitor stays stopped
# until it is started below without lifecycle, so nothing here is stopped for idling.
systemctl stop ds01-monitor.service
out=$(as alice "ds01 docker run -d --network none --memory 16m -e NVIDIA_VISIBLE_DEVICES=all ds01-test:latest true" 2>&1); rc=$?
check "alice's -e NVIDIA_VISIBLE_DEVICES=all is refused: GPUs only through --gpus" "1 1" "$([ $rc -ne 0 ] && echo 1) $(echo "$out" | grep -c -- '--gpus')" "$out"
as alice "ds01 docker run -d --name gpu-a --network none --memory 32m ds01-test:latest sleep 600" >/dev/null 2>&1
as boss "ds01 docker run -d --name gpu-b --network none --memory 32m -e NVIDIA_VISIBLE_DEVICES=1 ds01-test:latest sleep 600" >/dev/null 2>&1
pa=$(/usr/bin/docker inspect -f '{{.State.Pid}}' gpu-a 2>&1); pb=$(/usr/bin/docker inspect -f '{{.State.Pid}}' gpu-b 2>&1)
sleep 600 & bare=$!
cat >/var/lib/ds01/gpu-snap.json <<JSON
{"version": 1, "driver_version": "recorded",
 "gpus": [{"index": 0, "uuid": "GPU-vm-0", "name": "Recorded H200", "memory_used_bytes": 2147483648, "memory_total_bytes": 151397597184, "utilization_pct": 85},
          {"index": 1, "uuid": "GPU-vm-1", "name": "Recorded H200", "memory_used_bytes": 1073741824, "memory_total_bytes": 151397597184, "utilization_pct": 0}],
 "processes": [{"pid": $pa, "device": "GPU-vm-0", "used_memory_bytes": 2147483648, "sm_util_pct": 85},
               {"pid": $pb, "device": "GPU-vm-1", "used_memory_bytes": 1073741824, "sm_util_pct": 0},
               {"pid": $bare, "device": "GPU-vm-0", "used_memory_bytes": 1048576},
               {"pid": 999999, "device": "GPU-vm-1", "used_memory_bytes": 1048576}]}
JSON
out=$(DS01_GPU_SNAPSHOT=/var/lib/ds01/gpu-snap.json ds01 gpu 2>&1); rc=$?
row() { echo "$out" | awk -v p="$1" '$1 == p'; }
check "ds01 gpu: alice's process in her container, from /proc/$pa/cgroup" "0 1" "$rc $(row "$pa" | grep -c 'alice.*gpu-a')" "$out"
check "ds01 gpu: GPU 1 held by boss's gpu-b (NVIDIA_VISIBLE_DEVICES), idle-tracked" 1 "$(echo "$out" | grep '^1 ' | grep -c 'boss.*gpu-b')" "$out"
check "ds01 gpu: root's bare-metal process, and a vanished pid as exited" "1 1" "$(row "$bare" | grep -c 'root.*bare metal') $(row 999999 | grep -c exited)"
mkdir -p /etc/systemd/system/ds01-monitor.service.d
printf '[Service]\nEnvironment=DS01_GPU_SNAPSHOT=/var/lib/ds01/gpu-snap.json\nExecStart=\nExecStart=/usr/bin/ds01 monitor --listen 127.0.0.1:9101 --interval 5s --gpu-interval 1s --no-lifecycle\n' >/etc/systemd/system/ds01-monitor.service.d/gpu.conf
systemctl daemon-reload
systemctl restart ds01-monitor.service
for i in $(seq 1 60); do http_get /metrics | grep -q '^ds01_gpu_allocated{gpu="1",user="boss"' && break; sleep 0.5; done
metrics=$(http_get /metrics)
check "/metrics: GPU 1 allocated to boss, alice's GPU memory, root's bare-metal use" "1 1 1" "$(echo "$metrics" | grep -cE '^ds01_gpu_allocated\{gpu="1",user="boss",container="gpu-b"\} 1(\.0)?$') $(echo "$metrics" | grep -cE '^ds01_user_gpu_memory_bytes\{user="alice"\} 2147483648(\.0)?$') $(echo "$metrics" | grep -cE '^ds01_user_gpu_bare_metal_processes\{user="root",exempt="false"\} 1(\.0)?$')" "$(echo "$metrics" | grep '^ds01_.*gpu' | head -20)"
sleep 6
check "the stats lines carry boss's GPU fields" 1 "$(tail -n 20 /var/log/ds01/resource-stats.log | grep '"user":"boss"' | grep -c '"gpus_allocated":1')" "$(tail -n 3 /var/log/ds01/resource-stats.log)"
out=$(as boss "ds01 greet --plain" 2>&1)
check "the greeting shows boss his GPU" 1 "$(echo "$out" | grep -c 'GPU        0 of 1 in use, 1.0 GiB, 0 %')" "$out"
out=$(DS01_GPU_SNAPSHOT=/var/lib/ds01/gpu-snap.json ds01 top --once --plain --width 160 2>&1); rc=$?
check "ds01 top --once (admin) on real slices: alice's and boss's rows, the GPU column" "0 1 1 1" "$rc $(echo "$out" | grep -c 'GPU n/mem/util') $(echo "$out" | grep -E '^alice ' | grep -c '0 2.0G -') $(echo "$out" | grep -E '^boss ' | grep -c '1 1.0G 0%')" "$out"
# As a person uses it: alice in a terminal (tmux), her row and everyone else summed.
as alice "DS01_GPU_SNAPSHOT=/var/lib/ds01/gpu-snap.json tmux -L top new-session -d -x 100 -y 24 'ds01 top'"
pane=
for i in $(seq 1 20); do sleep 0.5; pane=$(as alice "tmux -L top capture-pane -p" 2>&1); echo "$pane" | grep -q '^(1 other)' && break; done
check "ds01 top in tmux as alice (80-100 columns): her own row, the others summed, the keys line" "1 1 0 1" "$(echo "$pane" | grep -cE '^alice ') $(echo "$pane" | grep -c '^(1 other)') $(echo "$pane" | grep -cE '^boss ') $(echo "$pane" | grep -c 'q quit')" "$pane"
as alice "tmux -L top send-keys q" 2>/dev/null
sleep 1
check "q quits ds01 top" 0 "$(as alice 'tmux -L top list-sessions' 2>/dev/null | grep -c .)"
kill $bare 2>/dev/null
/usr/bin/docker rm -f gpu-a gpu-b >/dev/null 2>&1
rm -f /etc/systemd/system/ds01-monitor.service.d/gpu.conf /var/lib/ds01/gpu-snap.json
systemctl daemon-reload
systemctl restart ds01-monitor.service

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
