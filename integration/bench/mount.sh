#!/usr/bin/env bash
# Mount reads of one point (make bench, or alone): the latest point of the
# kept repositories (disk2.img) mounted by cairn, restic and borg, in the
# same run, alternating tool by tool each round. Per tool and round:
#   - time from starting the mount to the first byte of the disk readable;
#   - sequential read of the whole disk (dd bs=1M), cold: a fresh mount,
#     page cache dropped, then the repository read once so that only the
#     mount's own work is timed; and warm: the same read again, same mount;
#   - 4 KiB preads at seeded offsets inside data (benchtool preads), one
#     reader and 4 parallel readers, on another fresh, cold mount;
# and cairn restore of the same point to a file, for the ratio.
#
#   BENCH_MOUNT_ROUNDS=5   rounds
#   BENCH_MOUNT_TOOLS      default "cairn restic borg"
#   BENCH_READS=2000       random reads per measurement
. "$(dirname "$0")/lib.sh"

rounds=${BENCH_MOUNT_ROUNDS:-5}
tools=${BENCH_MOUNT_TOOLS:-cairn restic borg}
nreads=${BENCH_READS:-2000}

bench_setup
make_disks
ensure_repos

img=$work/disk2.img
size=$(stat -c %s "$img")
out=$work/mount
mnt=$out/mnt
rm -rf "$out"
mkdir -p "$mnt"
tsv=$work/mount.tsv
printf 'tool\tround\tmetric\tvalue\n' >"$tsv"
row() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$tsv"; }

# inputs TOOL prints what a mount of TOOL reads: its repository and caches.
inputs() { echo "$repos/$1"; }

mpid=
# mount_start TOOL starts TOOL's mount of the latest point in the
# background, sets file to the disk inside it and ttfb to the seconds until
# its first byte could be read.
mount_start() {
	local t=$1 t0 t1
	t0=$(now)
	case $t in
	cairn)
		"$cairn" --vault "$repos/cairn/repo" mount "$mnt" 2>"$out/$t.log" &
		file=$mnt/disk/latest/disk.raw
		;;
	restic)
		RESTIC_CACHE_DIR=$repos/restic/cache restic -q -r "$repos/restic/repo" mount "$mnt" >"$out/$t.log" 2>&1 &
		file=$mnt/snapshots/latest$work/cur/disk.img
		;;
	borg)
		BORG_BASE_DIR=$repos/borg/base borg mount -f "$repos/borg/repo::incremental" "$mnt" >"$out/$t.log" 2>&1 &
		file=$mnt${work}/cur/disk.img
		;;
	esac
	mpid=$!
	until head -c1 "$file" >/dev/null 2>&1; do
		kill -0 "$mpid" 2>/dev/null || {
			cat "$out/$t.log" >&2
			die "$t mount exited"
		}
		[ "$(echo "$(now) - $t0 > 120" | bc)" = 1 ] && die "$t mount: $file not readable after 120 s"
		sleep 0.01
	done
	t1=$(now)
	ttfb=$(echo "$t1 - $t0" | bc)
}

mount_stop() {
	case $1 in
	cairn) "$cairn" umount "$mnt" >/dev/null 2>&1 || kill -TERM "$mpid" ;;
	restic) fusermount -u "$mnt" 2>/dev/null || umount "$mnt" || kill -INT "$mpid" ;;
	borg) borg umount "$mnt" ;;
	esac
	wait "$mpid" || true
	mpid=
	mountpoint -q "$mnt" && die "$mnt still mounted"
	return 0
}
trap '[ -z "$mpid" ] || { fusermount -u "$mnt" 2>/dev/null || umount -l "$mnt"; kill "$mpid"; } 2>/dev/null' EXIT

# seconds CMD... runs CMD and sets secs.
seconds() {
	local t0
	t0=$(now)
	"$@"
	secs=$(echo "$(now) - $t0" | bc)
}

mibs() { awk -v b="$size" -v s="$1" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }

for r in $(seq 1 "$rounds"); do
	for t in $tools; do
		# Sequential, cold then warm.
		drop_caches "$(inputs "$t")"
		mount_start "$t"
		row "$t" "$r" ttfb "$ttfb"
		drop_caches "$(inputs "$t")"
		seconds dd if="$file" of=/dev/null bs=1M status=none
		row "$t" "$r" seq_cold "$(mibs "$secs")"
		seconds dd if="$file" of=/dev/null bs=1M status=none
		row "$t" "$r" seq_warm "$(mibs "$secs")"
		mount_stop "$t"
		# Random 4 KiB reads on a fresh, cold mount; the parallel run draws
		# other offsets so it finds nothing cached by the first.
		drop_caches "$(inputs "$t")"
		mount_start "$t"
		row "$t" "$r" ttfb "$ttfb"
		drop_caches "$(inputs "$t")"
		"$benchtool" preads -image "$img" -n "$nreads" -j 1 -seed $((seed * 1000 + r)) "$file" >"$out/rr1" 2>>"$out/preads.err"
		"$benchtool" preads -image "$img" -n "$nreads" -j 4 -seed $((seed * 1000 + 500 + r)) "$file" >"$out/rr4" 2>>"$out/preads.err"
		row "$t" "$r" rand1 "$(awk '{ print $6 }' "$out/rr1")"
		row "$t" "$r" rand4 "$(awk '{ print $6 }' "$out/rr4")"
		row "$t" "$r" failed "$(awk '{ s += $8 } END { print s + 0 }' "$out/rr1" "$out/rr4")"
		mount_stop "$t"
		log "$(awk -F '\t' -v t="$t" -v r="$r" '$1 == t && $2 == r { printf "%s %s  ", $3, $4 }' "$tsv")"
	done
	case " $tools " in *" cairn "*)
		drop_caches "$(inputs cairn)"
		seconds "$cairn" --vault "$repos/cairn/repo" restore disk@latest "$out/restore.raw"
		row cairn "$r" restore "$(mibs "$secs")"
		cmp -s "$out/restore.raw" "$img" || die "cairn restore differs from disk2.img"
		rm -f "$out/restore.raw"
		log "cairn restore $(mibs "$secs") MiB/s"
		;;
	esac
done

# Checks: what each mount serves is the disk, byte for byte.
served=
for t in $tools; do
	mount_start "$t"
	if cmp -s "$file" "$img"; then served="$served $t: exact;"; else served="$served $t: DIFFERS or fails;"; fi
	mount_stop "$t"
done
log "whole-disk cmp through each mount:$served"

{
	echo
	echo "## Mount reads: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') vs restic $(restic version | awk '{ print $2 }') and borg $(borg --version | awk '{ print $2 }')"
	echo
	echo "Latest point (disk2.img, $((size >> 20)) MiB, $(($(du -B1 "$img" | cut -f1) >> 20)) MiB allocated); $rounds rounds, medians (range); $nreads reads per random run."
	echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	awk -F '\t' '
	function median(k,   n, i, j, t, a) {
		n = split(vals[k], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		lo[k] = a[1]; hi[k] = a[n]
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR > 1 { vals[$1 SUBSEP $3] = vals[$1 SUBSEP $3] " " $4; if (!($1 in seen)) { seen[$1] = 1; order[++nt] = $1 } }
	END {
		print "| tool | seq cold MiB/s | seq warm MiB/s | random 4 KiB reads/s, 1 reader | random, 4 readers | failed random reads | mount to first byte s |"
		print "|---|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= nt; i++) {
			t = order[i]
			for (m = 1; m <= 5; m++) { split("seq_cold seq_warm rand1 rand4 ttfb", ms, " "); med[t, ms[m]] = median(t SUBSEP ms[m]) }
			nf = split(vals[t SUBSEP "failed"], fa, " "); fs = 0; for (m = 1; m <= nf; m++) fs += fa[m]
			printf "| %s | %.0f (%.0f–%.0f) | %.0f (%.0f–%.0f) | %.0f | %.0f | %d | %.2f |\n", t,
				med[t, "seq_cold"], lo[t SUBSEP "seq_cold"], hi[t SUBSEP "seq_cold"],
				med[t, "seq_warm"], lo[t SUBSEP "seq_warm"], hi[t SUBSEP "seq_warm"],
				med[t, "rand1"], med[t, "rand4"], fs, med[t, "ttfb"]
		}
		print ""
		if (!("cairn" in seen)) exit
		c = med["cairn", "seq_cold"]
		if (("cairn" SUBSEP "restore") in vals) {
			rs = median("cairn" SUBSEP "restore")
			printf "- cairn restore of the same point to a file: %.0f MiB/s (%.0f–%.0f); mount cold / restore = %.2f\n", rs, lo["cairn" SUBSEP "restore"], hi["cairn" SUBSEP "restore"], c / rs
			printf "- %s sequential within 1.3× of cairn restore: restore is %.2f× the mount (cold); warm mount / restore = %.2f\n", (rs / c <= 1.3 ? "PASS" : "MISS"), rs / c, med["cairn", "seq_warm"] / rs
		}
		if ("borg" in seen) printf "- %s sequential ≥ 2× borg: %.2f× cold (%.2f× warm)\n", (c >= 2 * med["borg", "seq_cold"] ? "PASS" : "MISS"), c / med["borg", "seq_cold"], med["cairn", "seq_warm"] / med["borg", "seq_warm"]
		if ("restic" in seen) printf "- %s sequential ≥ 4× restic: %.2f× cold (%.2f× warm)\n", (c >= 4 * med["restic", "seq_cold"] ? "PASS" : "MISS"), c / med["restic", "seq_cold"], med["cairn", "seq_warm"] / med["restic", "seq_warm"]
		for (k = 1; k <= 4; k += 3) {
			m = "rand" k; best = 0; bt = ""
			for (i = 1; i <= nt; i++) if (order[i] != "cairn" && med[order[i], m] > best) { best = med[order[i], m]; bt = order[i] }
			if (best > 0) printf "- %s random 4 KiB reads, %d reader%s, ≥ 20× the better peer (%s): %.1f×\n", (med["cairn", m] >= 20 * best ? "PASS" : "MISS"), k, (k > 1 ? "s" : ""), bt, med["cairn", m] / best
		}
	}' "$tsv"
	echo "- whole disk read through each mount, cmp against disk2.img:$served"
	[ ! -s "$out/preads.err" ] || sed 's/^/- /' "$out/preads.err"
} | tee "$work/mount.md"
