#!/usr/bin/env bash
# Fuzz every parser and decision that reads untrusted input (fuzz/fuzz_targets/).
#
#   scripts/fuzz.sh                 5 minutes per target (the documented long run)
#   scripts/fuzz.sh 5               5 seconds per target (what scripts/test.sh runs)
#   scripts/fuzz.sh 60 units        one target
#
# Corpora live in fuzz/corpus/<target> (git-ignored; seeded each run from the real
# configs in ../shared/compat, the demo and guest configs, and the samples below).
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run; turn it
# into a regression test. Prints one line of figures per target for
# docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

secs=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    targets=(config_load units kernel_files log_lines docker_argv proxy_route engine_json create_decision gpu_inputs)
fi

need_cargo
if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz needs nightly flags (-Z sanitizer, sancov). Use the nightly toolchain
# when there is one; a machine with only stable gets the same flags through
# RUSTC_BOOTSTRAP=1 (said, not hidden).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    FUZZ=(cargo +nightly fuzz)
else
    echo "note: no nightly toolchain here; building the fuzz targets with stable and RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    FUZZ=(cargo fuzz)
fi

seed() { # TARGET NAME CONTENT (printf format, so \0 and \n work)
    mkdir -p "fuzz/corpus/$1"
    printf "$3" >"fuzz/corpus/$1/seed-$2"
}
seed_file() { # TARGET FILE
    [ -f "$2" ] || return 0
    mkdir -p "fuzz/corpus/$1"
    cp "$2" "fuzz/corpus/$1/seed-$(basename "$(dirname "$2")")-$(basename "$2")"
}
for f in ../shared/compat/*.yaml demo/resource-limits.yaml deploy/resource-limits.example.yaml vm/guest/etc/ds01/resource-limits.yaml; do
    seed_file config_load "$f"
done
seed config_load overrides 'groups:\n  student:\n    aggregate: {memory_max: 4G, memory_high: 3G}\n\0alice\nbob # c\n\0alice:\n  max_cpus: 4\n'
for s in 16g 48G 512m 1.5t max infinity '"2400%%"' 150%% 0.5%% 500ms 2s 1.5m 1h john.doe Jane_Doe@x 'ds01-student-alice.slice'; do
    seed units "$(echo "$s" | tr -c 'a-zA-Z0-9' _)" "$s"
done
seed kernel_files memevents 'low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n'
seed kernel_files cpustat 'usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n'
seed kernel_files psi 'some avg10=1.23 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n'
seed kernel_files single 'max\n'
seed kernel_files netdev 'Inter-|   Receive\n face |bytes\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 5000 7 0 0 0 0 0 0 300 3 0 0 0 0 0 0\n'
seed kernel_files smi 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)\n  MIG 3g.20gb     Device  0: (UUID: MIG-bbbb)\nGPU 1: NVIDIA H100 (UUID: GPU-cccc)\n'
seed log_lines v1 '{"timestamp":"2026-01-30T14:30:00.123456Z","event_type":"container.create","schema_version":"1","user":"alice","source":"docker-wrapper","details":{"container":"alice-proj"}}'
seed log_lines legacy '{"ts": "2025-11-02T10:00:00Z", "event": "resource.oom_kill", "user": "bob", "container": "bob-x"}'
seed log_lines stats '{"timestamp":"2026-01-30T14:30:00Z","user":"alice","group":"student","memory_current":1048576,"memory_max":4294967296,"memory_pct":0.02,"pids_current":3,"oom_kills":0}'
seed log_lines phrase '1 hour ago'
seed log_lines day 'yesterday'
seed docker_argv run 'run\0-d\0--name\0x\0--gpus\0device=0,1\0-m\02g\0-v\0/home/alice:/w\0img\0sh'
seed docker_argv create 'create\0--cgroup-parent=system.slice\0--label\0ds01.user=bob\0img'
seed proxy_route create 'POST\0/v1.41/containers/create\0name=x'
seed proxy_route exec 'POST\0/containers/abc/exec\0'
seed proxy_route list 'GET\0/v1.43/containers/json\0all=1&filters=%%7B%%7D'
seed engine_json inspect '{"Id":"c1","Name":"/a","Created":"2026-12-01T10:00:00Z","Config":{"Labels":{"ds01.user":"alice","ds01.container_type":"compose"},"Env":["NVIDIA_VISIBLE_DEVICES=0,1"]},"State":{"Status":"running","StartedAt":"2026-12-01T10:00:01Z","FinishedAt":"0001-01-01T00:00:00Z","Pid":42},"HostConfig":{"DeviceRequests":[{"Driver":"","Count":-1,"DeviceIDs":null,"Capabilities":[["gpu"]]}]}}'
seed create_decision body '{"Image":"img","HostConfig":{"Binds":["/home/alice:/w"],"Privileged":false,"CapAdd":["SYS_ADMIN"],"Memory":1073741824,"DeviceRequests":[{"Count":1,"Capabilities":[["gpu"]]}]},"Labels":{"a":"b"}}'

for f in demo/gpu/*/snapshot.json; do seed_file gpu_inputs "$f"; done
seed gpu_inputs cgroup '0::/ds01.slice/ds01-student.slice/ds01-student-alice.slice/docker-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1.scope\n'

# Every input that once crashed a target is re-run first (fuzz/regressions/<target>).
for d in fuzz/regressions/*/; do
    [ -d "$d" ] || continue
    t=$(basename "$d")
    mkdir -p "fuzz/corpus/$t"
    cp "$d"* "fuzz/corpus/$t/" 2>/dev/null || true
done

fail=0
printf '%-16s %12s %8s %10s %8s\n' target execs seconds corpus crashes
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log=$(mktemp)
    rc=0
    (cd fuzz && "${FUZZ[@]}" run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1) >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(( $(find "fuzz/artifacts/$t" -type f | wc -l) - before ))
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    printf '%-16s %12s %8s %10s %8s\n' "$t" "${execs:-?}" "$secs" "$corpus" "$crashes"
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        fail=1
        echo "---- $t failed (exit $rc); the end of its log:"
        tail -40 "$log"
    fi
    rm -f "$log"
done
exit $fail
