#!/usr/bin/env bash
# Incremental backup from a dirty bitmap (make bench, or alone). A qcow2
# disk of BENCH_BITMAP_MB MiB, 60% data (8 MiB extents of a tar stream of
# /usr: real, compressible bytes) with holes between, is served by
# qemu-storage-daemon. Per round, from a fresh copy of it: a full backup
# over NBD starts checkpoint c1 (untimed); about 2% of the disk is
# rewritten through the daemon's writable export in scattered 1 MiB
# writes; then, from one export of that state (the README's flow: a
# fleecing job and a frozen copy of c1, started with c2 in one
# transaction), cairn backs it up twice into two copies of the vault:
# from the bitmap (bitmap=c1) and as an ordinary incremental that re-reads
# every allocated block (no bitmap), alternating which goes first;
# medians. Reported: wall and CPU time, the bytes cairn read (--json
# read) and the bytes the daemon read meanwhile (/proc/PID/io rchar: its
# image files and sockets), against the dirty bytes. Targets: the bitmap
# backup at least 5x faster, bytes read within 1.2x of the dirty bytes.
# Checks: both points restore identical to each other and to the disk
# (qemu-img compare), and say how they were read.
#
#   BENCH_BITMAP_MB=2048     disk size, MiB (a multiple of 40)
#   BENCH_BITMAP_ROUNDS=3    rounds
# and the settings of lib.sh (BENCH_DIR, BENCH_SEED, ...).
. "$(dirname "$0")/lib.sh"

size_mb=${BENCH_BITMAP_MB:-2048}
rounds=${BENCH_BITMAP_ROUNDS:-3}
ext_mb=8 # data and holes come in extents of this many MiB

bench_setup
for t in qemu-storage-daemon qemu-img qemu-io; do
	command -v "$t" >/dev/null || die "$t missing: run integration/install-deps.sh"
done
[ $((size_mb % (5 * ext_mb))) -eq 0 ] || die "BENCH_BITMAP_MB must be a multiple of $((5 * ext_mb))"

bdir=$work/bitmap
mkdir -p "$bdir"
pristine=$bdir/disk.qcow2
cur=$bdir/cur.qcow2

# stream is the disk's content: a tar of /usr/lib and /usr/share in a
# fixed order, padded with zeros should it run short.
stream() {
	{
		tar --sort=name -cf - /usr/lib /usr/share 2>/dev/null || true
		cat /dev/zero
	}
}

# Extent i holds data when i % 5 < 3.
nextents=$((size_mb / ext_mb))
data_mb=$((nextents * 3 * ext_mb / 5))
nwrites=$((size_mb * 2 / 100))
want="recipe=1 size=$size_mb seed=$seed"
if [ -f "$pristine" ] && [ "$(cat "$bdir/disk.stamp" 2>/dev/null)" = "$want" ]; then
	log "reusing $pristine ($want)"
else
	rm -f "$pristine" "$bdir/disk.stamp" "$bdir"/chunk.*
	log "making a $size_mb MiB qcow2 disk with $data_mb MiB of data"
	raw=$bdir/disk.raw
	rm -f "$raw"
	truncate -s "${size_mb}M" "$raw"
	{
		for ((i = 0; i < nextents; i++)); do
			if ((i % 5 < 3)); then
				dd of="$raw" bs=1M count=$ext_mb seek=$((i * ext_mb)) conv=notrunc iflag=fullblock status=none
			fi
		done
		# What follows in the stream feeds the writes of the change.
		dd of="$bdir/donor" bs=1M count="$nwrites" iflag=fullblock status=none
	} < <(stream)
	qemu-img convert -f raw -O qcow2 "$raw" "$pristine"
	rm -f "$raw"
	split -b 1M -d -a 4 "$bdir/donor" "$bdir/chunk."
	rm -f "$bdir/donor"
	echo "$want" >"$bdir/disk.stamp"
fi

# The change: nwrites distinct 1 MiB slots inside data extents, seeded.
RANDOM=$seed
declare -A taken
writes=()
for ((k = 0; k < nwrites; k++)); do
	while :; do
		e=$(((RANDOM * 32768 + RANDOM) % nextents))
		((e % 5 < 3)) || continue
		slot=$((e * ext_mb + RANDOM % ext_mb))
		[ -z "${taken[$slot]:-}" ] || continue
		taken[$slot]=1
		break
	done
	writes+=(-c "write -s $bdir/chunk.$(printf %04d "$k") $((slot << 20)) 1M")
done
dirty=$((nwrites << 20))

sock=$bdir/nbd.sock
qmpsock=$bdir/qmp.sock
uri="nbd+unix:///vda?socket=$sock"
qsd_pid=
trap '[ -z "$qsd_pid" ] || kill "$qsd_pid" 2>/dev/null || true' EXIT

qmp() { "$benchtool" qmp -socket "$qmpsock" "$@" >/dev/null; }

start_qsd() {
	rm -f "$sock" "$qmpsock"
	cp --sparse=always "$pristine" "$cur"
	qemu-storage-daemon --chardev "socket,id=qmp0,path=$qmpsock,server=on,wait=off" --monitor chardev=qmp0 \
		--blockdev "driver=file,node-name=file0,filename=$cur" --blockdev driver=qcow2,node-name=drive0,file=file0 \
		--nbd-server "addr.type=unix,addr.path=$sock" \
		--export type=nbd,id=guest,node-name=drive0,name=guest,writable=on >"$bdir/qsd.log" 2>&1 &
	qsd_pid=$!
	qmp '{"execute": "query-version"}' || die "qemu-storage-daemon did not start: $(cat "$bdir/qsd.log")"
}

stop_qsd() {
	qmp '{"execute": "quit"}'
	wait "$qsd_pid" || true
	qsd_pid=
}

# start_backup ADD [OLD]: the README's transaction, and the export.
start_backup() {
	local add=$1 old=${2:-} actions bitmaps=""
	rm -f "$bdir/fleece.qcow2"
	qemu-img create -q -f qcow2 "$bdir/fleece.qcow2" "${size_mb}M"
	qmp '{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "fleece",
		"file": {"driver": "file", "filename": "'"$bdir/fleece.qcow2"'"}, "backing": "drive0"}}'
	actions='{"type": "block-dirty-bitmap-add", "data": {"node": "drive0", "name": "'"$add"'", "persistent": true}}'
	if [ -n "$old" ]; then
		actions+=', {"type": "block-dirty-bitmap-add", "data": {"node": "fleece", "name": "'"$old"'", "disabled": true}}'
		actions+=', {"type": "block-dirty-bitmap-merge", "data": {"node": "fleece", "target": "'"$old"'", "bitmaps": [{"node": "drive0", "name": "'"$old"'"}]}}'
		bitmaps=', "bitmaps": ["'"$old"'"]'
	fi
	actions+=', {"type": "blockdev-backup", "data": {"job-id": "fleece", "device": "drive0", "target": "fleece", "sync": "none"}}'
	qmp '{"execute": "transaction", "arguments": {"actions": ['"$actions"']}}'
	qmp '{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "backup", "node-name": "fleece", "name": "vda", "writable": false'"$bitmaps"'}}'
}

end_backup() {
	qmp '{"execute": "block-export-del", "arguments": {"id": "backup"}}' '{"execute": "block-job-cancel", "arguments": {"device": "fleece"}}'
	qmp -retry 20s '{"execute": "blockdev-del", "arguments": {"node-name": "fleece"}}'
	rm -f "$bdir/fleece.qcow2"
}

rchar() { awk '$1 == "rchar:" { print $2 }' "/proc/$qsd_pid/io"; }

tsv=$work/bitmap.tsv
printf 'step\tround\twall\tcpu\trss_kb\tread\tqsd_read\tdirty\tother_cpu\n' >"$tsv"

# step NAME VAULT PARAMS: one timed backup of the export.
step() {
	local name=$1 vault=$2 params=$3 r0 r1 read
	warm "$cur" "$vault"
	r0=$(rchar)
	timed "$bdir/$name.$r" -- "$cairn" --vault "$vault" backup --name vm1 --json "vda=$uri$params"
	r1=$(rchar)
	read=$(json_field "$bdir/$name.$r.out" read)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$r" "$wall" "$cpu" "$rss_kb" "$read" $((r1 - r0)) "$dirty" "$other_cpu" >>"$tsv"
	log "$(printf '%-7s round %d wall %6.2f s  cpu %6.2f s  rss %4d MiB  read %7.1f MiB (daemon %7.1f MiB) of %d MiB dirty  (others: %.1f cpu s)' \
		"$name" "$r" "$wall" "$cpu" $((rss_kb / 1024)) "$(echo "$read / 1048576" | bc -l)" "$(echo "($r1 - $r0) / 1048576" | bc -l)" $((dirty >> 20)) "$other_cpu")"
}

check=pass
for r in $(seq 1 "$rounds"); do
	rdir=$bdir/r$r
	rm -rf "$rdir"
	mkdir -p "$rdir"
	start_qsd
	"$cairn" --vault "$rdir/bitmap" init >/dev/null
	start_backup c1
	"$cairn" --vault "$rdir/bitmap" backup --name vm1 "vda=$uri&checkpoint=c1" >/dev/null
	end_backup
	cp -a "$rdir/bitmap" "$rdir/full"
	qemu-io -f raw "${writes[@]}" "nbd+unix:///guest?socket=$sock" >/dev/null
	start_backup c2 c1
	if [ $((r % 2)) = 1 ]; then order="bitmap full"; else order="full bitmap"; fi
	for s in $order; do
		case $s in
		bitmap) step bitmap "$rdir/bitmap" "&bitmap=c1&checkpoint=c2" ;;
		full) step full "$rdir/full" "" ;;
		esac
	done
	grep -q '"bitmap_used": true' "$bdir/bitmap.$r.out" || {
		log "round $r: the bitmap backup did not use the bitmap: $(cat "$bdir/bitmap.$r.err")"
		check=FAIL
	}
	grep -q '"bitmap_used": false' "$bdir/full.$r.out" || check=FAIL
	end_backup
	stop_qsd
	for s in bitmap full; do
		"$cairn" --vault "$rdir/$s" restore vm1@latest "$rdir/$s.raw" >/dev/null
	done
	if cmp -s "$rdir/bitmap.raw" "$rdir/full.raw" && qemu-img compare -q -f raw -F qcow2 "$rdir/bitmap.raw" "$cur"; then
		log "round $r: both points restore identical to the disk"
	else
		log "round $r: the points DIFFER from each other or from the disk"
		check=FAIL
	fi
	rm -rf "$rdir"
done

{
	echo
	echo "## Incremental from a dirty bitmap: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') over NBD from $(qemu-storage-daemon --version | head -1)"
	echo
	echo "Disk: $size_mb MiB qcow2, $data_mb MiB of data in $ext_mb MiB extents; then $nwrites scattered 1 MiB writes ($((dirty >> 20)) MiB, $(echo "scale=1; 100 * $nwrites / $size_mb" | bc)%) through the daemon. The same export backed up from bitmap c1 and as a full re-read incremental into copies of one vault; $rounds rounds, medians; the disk and the vault read once before each timed step."
	echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times; CPU times less so)."
	echo
	awk -F '\t' '
	function med(s, f,   n, a, i, j, t) {
		n = split(col[s, f], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR > 1 {
		if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
		col[$1, "wall"] = col[$1, "wall"] " " $3; col[$1, "cpu"] = col[$1, "cpu"] " " $4; col[$1, "rss"] = col[$1, "rss"] " " $5
		col[$1, "read"] = col[$1, "read"] " " $6; col[$1, "qsd"] = col[$1, "qsd"] " " $7; col[$1, "other"] = col[$1, "other"] " " $9
		col[$1, "walls"] = col[$1, "walls"] ($1 in nw ? ", " : "") $3; nw[$1] = 1; dirty = $8
	}
	END {
		name["bitmap"] = "from bitmap c1"; name["full"] = "full re-read incremental"
		print "| backup | wall s (runs) | CPU s | peak RSS MiB | cairn read MiB | daemon read MiB | read / dirty | others\x27 CPU s |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= k; i++) {
			s = order[i]; w[s] = med(s, "wall"); c[s] = med(s, "cpu"); rd[s] = med(s, "read"); q[s] = med(s, "qsd")
			printf "| %s | %.2f (%s) | %.2f | %.0f | %.1f | %.1f | %.2f× | %.1f |\n", name[s], w[s], col[s, "walls"], c[s], med(s, "rss") / 1024,
				rd[s] / 1048576, q[s] / 1048576, rd[s] / dirty, med(s, "other")
		}
		print ""
		if (("bitmap" in seen) && ("full" in seen)) {
			printf "- %s bitmap backup ≥ 5× faster than the full re-read: %.2f× (CPU %.2f×)\n", (w["full"] >= 5 * w["bitmap"] ? "PASS" : "MISS"), w["full"] / w["bitmap"], c["full"] / c["bitmap"]
			printf "- %s bytes read ≤ 1.2× the dirty bytes: cairn %.3f×, the daemon %.3f× (the full re-read: %.1f×)\n", (rd["bitmap"] <= 1.2 * dirty && q["bitmap"] <= 1.2 * dirty ? "PASS" : "MISS"), rd["bitmap"] / dirty, q["bitmap"] / dirty, rd["full"] / dirty
		}
	}' "$tsv"
	echo "- checks (the bitmap point used the bitmap, the other did not; both restore identical to each other and, by qemu-img compare, to the disk): $check"
} | tee "$work/bitmap.md"
[ "$check" = pass ]
