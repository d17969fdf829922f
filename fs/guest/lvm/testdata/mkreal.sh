#!/usr/bin/env bash
# Makes real-lvm2-*.gz: the heads (label and metadata area, the first
# MiB) of two PVs set up by LVM2's own tools, and real-lvm2.lvs, what
# lvs says of their layout. Needs root and two free loop devices; run
# by hand when the files should change (tests only read them):
#   cd testdata && sudo ./mkreal.sh
# The PVs are 48 MiB: linear "lin-ear" (8 MiB), striped "str-ipe" (2
# stripes of 64 KiB, 8 MiB), two-segment "multi" (4 MiB on each), 1 MiB
# extents, in VG "my-vg".
set -euo pipefail
export LVM_SUPPRESS_FD_WARNINGS=1
tmp=$(mktemp -d)
trap 'losetup -d "${A:-}" "${B:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
truncate -s 48M "$tmp/p0" "$tmp/p1"
A=$(losetup -f --show "$tmp/p0")
B=$(losetup -f --show "$tmp/p1")
cfg='devices { use_devicesfile=0 filter=["a|^/dev/loop|", "r|.*|"] } activation { udev_sync=0 udev_rules=0 }'
lvm() { command "$@" --driverloaded n --config "$cfg" >/dev/null; }
lvm pvcreate "$A" "$B"
lvm vgcreate -s 1M my-vg "$A" "$B"
lvm lvcreate -an -Zn -L 8M -n lin my-vg "$A"
lvm lvcreate -an -Zn -L 8M -i2 -I64k -n str-ipe my-vg
lvm lvcreate -an -Zn -L 4M -n multi my-vg "$A"
lvm lvextend -L +4M my-vg/multi "$B"
lvm lvrename my-vg lin lin-ear
lvs --driverloaded n --config "$cfg" -a --segments --noheadings --separator ';' --units b \
	-o lv_name,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges,lv_attr my-vg 2>/dev/null |
	sed "s|$A|pv0|g; s|$B|pv1|g; s/^ *//" >real-lvm2.lvs
pvs --driverloaded n --config "$cfg" --noheadings --separator ';' --units b -o pv_name,pv_uuid,pe_start 2>/dev/null |
	sed "s|$A|pv0|g; s|$B|pv1|g; s/^ *//" >>real-lvm2.lvs
losetup -d "$A" "$B"
A= B=
for i in 0 1; do head -c 1M "$tmp/p$i" | gzip -9n >real-lvm2-pv$i.gz; done
