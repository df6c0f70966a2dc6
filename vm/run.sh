#!/usr/bin/env bash
# The real-kernel scenario: build ds01, build or reuse the guest image, boot it
# under QEMU with the payload on a 9p share, run guest/scenario.sh as a systemd
# unit, bring the results back, and exit non-zero on any failed check — printing
# the guest's own evidence. About 2-3 minutes with a cached image under TCG.
#
# Knobs: DS01_VM_CACHE (image cache), ACCEL=auto|kvm|tcg, MEM (MiB, 2048), SMP (2),
#        TIMEOUT (s, 900), KEEP=1 (keep the work dir).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
log() { echo "[vm] $*"; }

"$HERE/host-setup.sh"
command -v qemu-system-x86_64 >/dev/null || { echo "[vm] FAIL: qemu-system-x86_64 is not installed and could not be installed" >&2; exit 1; }

log "building the Debian package"
DEB=$("$ROOT/packaging/build-deb.sh")
log "package: $DEB"
IMG=$("$HERE/build-image.sh")
log "image: $IMG"

WORK=$(mktemp -d /tmp/ds01-vm.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
SHARE=$WORK/share
mkdir -p "$SHARE/results" "$WORK/bb/bin"
cp "$DEB" "$SHARE/ds01.deb"
cp "$HERE/guest/scenario.sh" "$SHARE/scenario.sh"
cp -r "$HERE/guest/etc" "$SHARE/etc"
# The container image, built offline: static busybox + the hog, `docker import`ed
# in the guest (no registry).
rustc -C opt-level=2 -C target-feature=+crt-static "$HERE/hog.rs" -o "$WORK/bb/bin/hog"
cp /bin/busybox "$WORK/bb/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/bb/bin/$a"; done
tar -C "$WORK/bb" -cf "$SHARE/image.tar" .

ACCEL=${ACCEL:-auto}
if [ "$ACCEL" = auto ]; then
    # /dev/kvm here may be a nested flavour (kvm_pvm) that cannot boot a stock kernel.
    if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then ACCEL=kvm; else ACCEL=tcg; fi
fi
case $ACCEL in
    kvm) QACCEL=(-accel kvm -cpu host) ;;
    *) QACCEL=(-accel tcg,thread=multi -cpu max) ;;
esac
APPEND="root=/dev/vda rw console=ttyS0 panic=-1 quiet loglevel=3 systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all psi=1 net.ifnames=0"
log "booting (accel=$ACCEL, mem=${MEM:-2048}M, smp=${SMP:-2})"
t0=$(date +%s)
set +e
timeout --foreground -k 5 "${TIMEOUT:-900}" qemu-system-x86_64 "${QACCEL[@]}" \
    -m "${MEM:-2048}" -smp "${SMP:-2}" -nographic -nodefaults -no-reboot \
    -serial stdio -monitor none -nic none \
    -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" -append "$APPEND" \
    -drive file="$IMG/disk.img",format=raw,if=virtio,cache=unsafe -snapshot \
    -virtfs local,path="$SHARE",mount_tag=hostshare,security_model=none,id=hostshare \
    >"$WORK/serial.log" 2>&1
QRC=$?
set -e
log "guest ran for $(($(date +%s) - t0)) s (qemu exit $QRC)"
if [ -f "$SHARE/results/scenario.log" ]; then
    sed 's/^/  | /' "$SHARE/results/scenario.log"
else
    log "no scenario log came back; the serial console said:"
    tail -60 "$WORK/serial.log" | sed 's/^/  ! /'
fi
if grep -q '^VMTEST-RESULT: PASS' "$SHARE/results/scenario.log" 2>/dev/null; then
    log "PASS"
    exit 0
fi
log "FAIL (serial log: $WORK/serial.log${KEEP:+, kept})"
[ "${KEEP:-0}" = 1 ] || tail -40 "$WORK/serial.log" | sed 's/^/  ! /'
exit 1
