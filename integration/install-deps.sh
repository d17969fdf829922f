#!/usr/bin/env bash
# Installs the outside tools cairn's tests, demo and benchmarks use, when
# any is missing. Needs root (apt-get); prints what is missing otherwise.
set -euo pipefail

need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check mkfs.ext4   e2fsprogs
check debugfs     e2fsprogs
check mkfs.xfs    xfsprogs
check xfs_db      xfsprogs
check fusermount3 fuse3
check qemu-img    qemu-utils
check qemu-nbd    qemu-utils
check qemu-storage-daemon qemu-system-common
check nbd-client  nbd-client
check zstd        zstd
check lz4         lz4
check mkfs.vfat   dosfstools
check mcopy       mtools
check mkntfs      ntfs-3g
check sgdisk      gdisk
check sfdisk      fdisk
check setfattr    attr
check pvck        lvm2
check thin_restore thin-provisioning-tools
check cryptsetup  cryptsetup-bin
check mkfs.btrfs  btrfs-progs
check mkswap      util-linux
check script      bsdutils
check curl        curl
check restic      restic
check systemd-analyze systemd
check man         man-db
check borg        borgbackup
[ -x /usr/bin/time ] || need+=(time)
# borg mount (make bench) needs a FUSE binding for Python.
/usr/bin/python3 -c 'import pyfuse3' 2>/dev/null || /usr/bin/python3 -c 'import llfuse' 2>/dev/null || need+=(python3-pyfuse3)

[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
	echo "cairn: missing packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
	exit 1
fi
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
