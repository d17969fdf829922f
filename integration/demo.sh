#!/usr/bin/env bash
# cairn demo: makes a sample ext4 disk from real files, backs it up twice
# with a change in between, lists the points, restores one and checks it,
# mounts them all, copies a disk and a file out, exports a qcow2 image and
# backs that image up as a disk.
#
# It works in a new folder under /var/tmp (about 1.6 GiB) and removes it
# at the end; DEMO_KEEP=1 keeps it, DEMO_DIR=DIR works in DIR and keeps
# it. A failed demo keeps its folder and says where it is.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cairn="$root/bin/cairn"
keep=${DEMO_KEEP:-}
if [ -n "${DEMO_DIR:-}" ]; then
	work=$DEMO_DIR
	keep=1
else
	work=$(mktemp -d /var/tmp/cairn-demo.XXXXXX)
fi
mkdir -p "$work"
export CAIRN_VAULT="$work/vault"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
mount_pid=
finish() {
	status=$?
	if [ -n "$mount_pid" ]; then
		kill "$mount_pid" 2>/dev/null || true
		wait "$mount_pid" 2>/dev/null || true
	fi
	if [ $status -ne 0 ]; then
		echo "demo failed; its files are in $work (remove with: rm -rf $work)" >&2
	elif [ -n "$keep" ]; then
		echo "demo files are in $work (remove with: rm -rf $work)"
	else
		rm -rf "$work"
		echo "demo files removed (DEMO_KEEP=1 keeps them)"
	fi
}
trap finish EXIT
# debugfs prints its version banner on stderr even when all goes well.
quiet_debugfs() { debugfs "$@" 2> >(grep -v '^debugfs [0-9]' >&2); }

step "making a 512 MiB ext4 disk from /usr/share/doc and /usr/share/man"
rm -rf "$work/tree" "$CAIRN_VAULT" "$work"/*.img
mkdir -p "$work/tree"
cp -a /usr/share/doc "$work/tree/doc"
cp -a /usr/share/man "$work/tree/man" 2>/dev/null || true
mkfs.ext4 -q -F -d "$work/tree" "$work/vda.img" 512M
du -h --apparent-size "$work/vda.img" | sed 's/\t.*/ logical/'
du -h "$work/vda.img" | sed 's/\t.*/ allocated/'

step "cairn init"
"$cairn" init

step "cairn backup --name demo vda.img   (full)"
cp --sparse=always "$work/vda.img" "$work/vda-v1.img"
"$cairn" backup --name demo "$work/vda.img"

step "changing the disk: adding a file through the filesystem"
head -c 8M /dev/urandom > "$work/new.bin"
quiet_debugfs -w -R "write $work/new.bin new.bin" "$work/vda.img" >/dev/null
cp --sparse=always "$work/vda.img" "$work/vda-v2.img"

step "cairn backup --name demo vda.img   (incremental)"
"$cairn" backup --name demo "$work/vda.img"

step "cairn points"
"$cairn" points

step "cairn stats"
"$cairn" stats

step "cairn restore demo@latest restored.img && cmp"
"$cairn" restore demo@latest "$work/restored.img"
cmp "$work/vda-v2.img" "$work/restored.img"
echo "restored disk is byte-identical to the source"
e2fsck -fn "$work/restored.img" >/dev/null && echo "e2fsck: restored filesystem is clean"

step "cairn verify --data"
"$cairn" verify --data

step "cairn mount: every point as a read-only folder"
mkdir -p "$work/mnt"
"$cairn" mount "$work/mnt" 2>"$work/mount.log" &
mount_pid=$!
for _ in $(seq 100); do grep -q "fuse.cairn" /proc/mounts && mountpoint -q "$work/mnt" && break; sleep 0.1; done
ls -l "$work/mnt/demo"
ls -l "$work/mnt/demo/latest/"
echo "(cairn points, while the mount owns the vault, runs through its socket:)"
"$cairn" points demo

step "copying the first point's disk out of the mount"
first=$(ls "$work/mnt/demo" | grep -v latest | awk 'NR == 1')
cp --sparse=always "$work/mnt/demo/$first/vda.raw" "$work/first.img"
cmp "$work/first.img" "$work/vda-v1.img"
echo "copied $first/vda.raw: byte-identical to the disk before the change"

step "restoring one file from inside the first point's disk with cp"
ls "$work/mnt/demo/$first/vda/"
file=$(cd "$work/tree" && find doc -type f -size +1k | sort | awk 'NR == 1')
cp -a "$work/mnt/demo/$first/vda/$file" "$work/restored-file"
cmp "$work/restored-file" "$work/tree/$file"
echo "vda/$file copied out of the backup: identical to the original"
echo "(the same without a mount:) cairn ls demo@latest:vda"
"$cairn" ls demo@latest:vda

step "cairn export: the latest point as a zstd-compressed qcow2 image"
"$cairn" export demo@latest --format qcow2 --compress zstd -o "$work/vda.qcow2"
qemu-img check -q "$work/vda.qcow2" && echo "qemu-img check: no errors"
qemu-img compare -q "$work/vda.qcow2" "$work/restored.img" && echo "qemu-img compare: identical to the restored disk"
ls -ls "$work/restored.img" "$work/vda.qcow2"

step "cairn backup of the qcow2 image: the guest disk is backed up, and appears in the mount"
"$cairn" backup --name vm1 "$work/vda.qcow2"
for _ in $(seq 20); do [ -e "$work/mnt/vm1/latest" ] && break; sleep 0.1; done
ls -l "$work/mnt" "$work/mnt/vm1/latest/"
cmp "$work/mnt/vm1/latest/vda.raw" "$work/restored.img"
echo "vm1@latest/vda.raw through the mount: byte-identical to the disk inside the qcow2"

step "cairn umount"
"$cairn" umount "$work/mnt"
wait $mount_pid
mount_pid=
echo
