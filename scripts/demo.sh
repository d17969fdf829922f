#!/usr/bin/env bash
# cairn demo: makes a sample ext4 disk from real files, backs it up twice
# with a change in between, lists the points, restores one and checks it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cairn="$root/bin/cairn"
work=${DEMO_DIR:-$(mktemp -d /var/tmp/cairn-demo.XXXXXX)}
mkdir -p "$work"
export CAIRN_VAULT="$work/vault"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

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
"$cairn" backup --name demo "$work/vda.img"

step "changing the disk: adding a file through the filesystem"
head -c 8M /dev/urandom > "$work/new.bin"
debugfs -w -R "write $work/new.bin new.bin" "$work/vda.img" >/dev/null
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

echo
echo "demo files are in $work (remove with: rm -rf $work)"
