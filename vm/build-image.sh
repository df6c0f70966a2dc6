#!/usr/bin/env bash
# Build (or reuse) the guest disk image for the real-kernel tests: Debian bookworm
# with systemd as PID 1, pure cgroup v2, dockerd with the systemd cgroup driver,
# apparmor, and the scenario's Unix accounts. Cached under $DS01_VM_CACHE (default
# /var/cache/ds01-vm), keyed on this script's own hash: edit it and the image is
# rebuilt. Prints the image directory on stdout.
set -euo pipefail
# Only the image directory goes to stdout; everything else to stderr.
exec 3>&1 1>&2
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${DS01_VM_CACHE:-/var/cache/ds01-vm}
KEY=$(sha256sum "$HERE/build-image.sh" | cut -c1-16)
OUT=$CACHE/image-$KEY
if [ -f "$OUT/disk.img" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ]; then
    echo "$OUT" >&3
    exit 0
fi
log() { echo "[build-image] $*" >&2; }
mirror() {
    awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep . ||
        awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list
}
MIRROR=${MIRROR:-$(mirror)}
mkdir -p "$CACHE"
rm -rf "$CACHE"/image-*.tmp
TMP=$OUT.tmp
R=$TMP/rootfs
mkdir -p "$TMP"
t0=$(date +%s)
log "debootstrap bookworm from $MIRROR (about 2 minutes)"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,udev,dbus,kmod,iproute2,procps,linux-image-amd64,docker.io,docker-compose,python3-docker,apparmor,ca-certificates,passwd,login,util-linux,tmux \
    bookworm "$R" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 || {
    tail -20 "$TMP/debootstrap.log" >&2
    exit 1
}
log "debootstrap done in $(($(date +%s) - t0)) s"

echo ds01-vm >"$R/etc/hostname"
cat >"$R/etc/fstab" <<'FSTAB'
/dev/vda   /          ext4  rw,noatime,errors=remount-ro          0 1
hostshare  /mnt/host  9p    trans=virtio,version=9p2000.L,msize=262144,nofail,x-systemd.device-timeout=10s  0 0
FSTAB
mkdir -p "$R/mnt/host" "$R/etc/docker"
chroot "$R" passwd -d root >/dev/null
# Docker: the systemd cgroup driver (what ds01 requires); no network in the VM.
cat >"$R/etc/docker/daemon.json" <<'JSON'
{
  "exec-opts": ["native.cgroupdriver=systemd"],
  "storage-driver": "overlay2",
  "iptables": false,
  "bridge": "none",
  "log-driver": "json-file"
}
JSON
# The scenario's people: alice and bob (students), h.baker (student, a '.' in the
# name), boss (admin, in ds01-admin). All may use docker. docker-compose and the
# Python SDK (python3-docker) are the proxy scenario's non-wrapper clients.
chroot "$R" groupadd -f ds01-admin
chroot "$R" useradd -m -s /bin/bash -G docker alice
chroot "$R" useradd -m -s /bin/bash -G docker h.baker
chroot "$R" useradd -m -s /bin/bash -G docker bob
chroot "$R" useradd -m -s /bin/bash -G docker,ds01-admin boss
# The scenario runs as a oneshot unit once the system is up, then powers off.
cat >"$R/etc/systemd/system/ds01-scenario.service" <<'UNIT'
[Unit]
Description=ds01 real-kernel scenario (payload from the 9p share)
Wants=docker.service
After=docker.service systemd-user-sessions.service
RequiresMountsFor=/mnt/host
ConditionPathExists=/mnt/host/scenario.sh
# In [Unit]: in [Service] SuccessAction is silently ignored.
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/bin/bash /mnt/host/scenario.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/ds01-scenario.service "$R/etc/systemd/system/multi-user.target.wants/ds01-scenario.service"
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer getty@tty1.service serial-getty@ttyS0.service; do
    ln -sf /dev/null "$R/etc/systemd/system/$u"
done
# A small initrd: virtio disk and ext4 only (the default one is slow under TCG).
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$R/etc/initramfs-tools/conf.d/ds01-vm.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >"$R/etc/initramfs-tools/modules"
chroot "$R" update-initramfs -u -k all >/dev/null 2>&1
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*_Packages
KV=$(ls "$R/lib/modules" | head -1)
rm -rf "$R/lib/modules/$KV/kernel/drivers/"{gpu,media,net/wireless,infiniband,staging,bluetooth,iio,isdn} \
    "$R/lib/modules/$KV/kernel/sound"
chroot "$R" depmod "$KV"
cp "$(ls "$R"/boot/vmlinuz-* | sort -V | tail -1)" "$TMP/vmlinuz"
cp "$(ls "$R"/boot/initrd.img-* | sort -V | tail -1)" "$TMP/initrd.img"
mkfs.ext4 -q -F -L ds01root -d "$R" "$TMP/disk.img" 3G
rm -rf "$R"
for old in "$CACHE"/image-*; do [ "$old" = "$TMP" ] || rm -rf "$old"; done
mv "$TMP" "$OUT"
log "image ready in $(($(date +%s) - t0)) s: $OUT"
echo "$OUT" >&3
