#!/usr/bin/env bash
# Exports of one point (make bench, or alone): the latest point of the kept
# cairn vault (disk2.img) exported by cairn as qcow2 (zlib, zstd, and zstd
# with 256 KiB clusters, which copies the vault's blocks) and as a
# zstd stream (level 3, and level 1, which copies them too), against qemu-img convert -c and zstd -T0 of the same disk
# restored once to a raw file, in the same run, alternating, medians.
# Every input (the vault, or the raw file) is read once before each timed
# step. Then each cairn output is checked: qemu-img check and qemu-img
# compare against the raw file for qcow2, zstd -d | cmp for raw.
#
#   BENCH_EXPORT_ROUNDS=2   rounds
. "$(dirname "$0")/lib.sh"

rounds=${BENCH_EXPORT_ROUNDS:-2}

bench_setup
for t in qemu-img zstd; do command -v "$t" >/dev/null || die "$t missing: run integration/install-deps.sh"; done
make_disks
ensure_repos

vault=$repos/cairn/repo
xdir=$work/export
raw=$xdir/restored.raw
rm -rf "$xdir"
mkdir -p "$xdir"
log "restoring disk@latest once (untimed) for qemu-img and zstd"
"$cairn" --vault "$vault" restore disk@latest "$raw"
cmp -s "$raw" "$work/disk2.img" || die "restored raw differs from disk2.img"
size=$(stat -c %s "$raw")

tsv=$work/export.tsv
printf 'step\tround\twall\tcpu\trss_kb\tbytes\tother_cpu\n' >"$tsv"

# step NAME INPUT OUTPUT -- CMD...
step() {
	local name=$1 input=$2 output=$3
	shift 4
	rm -f "$output"
	drop_caches "$input"
	timed "$xdir/$name.$r" -- "$@"
	local bytes
	bytes=$(stat -c %s "$output")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$r" "$wall" "$cpu" "$rss_kb" "$bytes" "$other_cpu" >>"$tsv"
	log "$(printf '%-18s round %d wall %6.2f s  cpu %6.2f s  rss %4d MiB  out %5d MiB  (others: %.1f cpu s)' "$name" "$r" "$wall" "$cpu" $((rss_kb / 1024)) $((bytes >> 20)) "$other_cpu")"
}

for r in $(seq 1 "$rounds"); do
	step cairn-qcow2-zlib "$vault" "$xdir/c-zlib.qcow2" -- "$cairn" --vault "$vault" export disk@latest --format qcow2 -o "$xdir/c-zlib.qcow2"
	step qemu-img-zlib "$raw" "$xdir/q-zlib.qcow2" -- qemu-img convert -c -O qcow2 "$raw" "$xdir/q-zlib.qcow2"
	step cairn-qcow2-zstd "$vault" "$xdir/c-zstd.qcow2" -- "$cairn" --vault "$vault" export disk@latest --format qcow2 --compress zstd -o "$xdir/c-zstd.qcow2"
	step qemu-img-zstd "$raw" "$xdir/q-zstd.qcow2" -- qemu-img convert -c -O qcow2 -o compression_type=zstd "$raw" "$xdir/q-zstd.qcow2"
	step cairn-qcow2-zstd-256k "$vault" "$xdir/c-zstd-256k.qcow2" -- "$cairn" --vault "$vault" export disk@latest --format qcow2 --compress zstd --cluster-size 256K -o "$xdir/c-zstd-256k.qcow2"
	step cairn-raw-zstd "$vault" "$xdir/c.raw.zst" -- "$cairn" --vault "$vault" export disk@latest --format raw --compress zstd -o "$xdir/c.raw.zst"
	step cairn-raw-zstd-1 "$vault" "$xdir/c1.raw.zst" -- "$cairn" --vault "$vault" export disk@latest --format raw --compress zstd --level 1 -o "$xdir/c1.raw.zst"
	step zstd-T0-3 "$raw" "$xdir/z3.raw.zst" -- zstd -q -f -T0 -3 "$raw" -o "$xdir/z3.raw.zst"
	step zstd-T0-1 "$raw" "$xdir/z1.raw.zst" -- zstd -q -f -T0 -1 "$raw" -o "$xdir/z1.raw.zst"
done

check=pass
for q in c-zlib c-zstd c-zstd-256k; do
	if qemu-img check -q "$xdir/$q.qcow2" && qemu-img compare -q -f qcow2 -F raw "$xdir/$q.qcow2" "$raw"; then
		log "$q.qcow2: qemu-img check and compare ok"
	else
		log "$q.qcow2: qemu-img check or compare FAILED"
		check=FAIL
	fi
done
for z in c c1; do
	if zstd -q -d -c "$xdir/$z.raw.zst" | cmp -s - "$raw"; then
		log "$z.raw.zst: zstd -d | cmp ok"
	else
		log "$z.raw.zst: zstd -d | cmp FAILED"
		check=FAIL
	fi
done

{
	echo
	echo "## Export: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') vs $(qemu-img --version | head -1) and zstd $(zstd --version | grep -o 'v[0-9][0-9.]*' | head -1)"
	echo
	echo "Latest point (disk2.img, $((size >> 20)) MiB, $(($(du -B1 "$raw" | cut -f1) >> 20)) MiB allocated); peers read the disk restored once to a raw file; $rounds rounds, medians; the input (vault or raw file) read once after dropping the page cache before each step."
	echo
	awk -F '\t' '
	function med(s, f,   n, a, i, j, t) {
		n = split(col[s, f], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR > 1 {
		if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
		col[$1, "wall"] = col[$1, "wall"] " " $3; col[$1, "cpu"] = col[$1, "cpu"] " " $4
		col[$1, "rss"] = col[$1, "rss"] " " $5; col[$1, "bytes"] = col[$1, "bytes"] " " $6; col[$1, "other"] = col[$1, "other"] " " $7
		col[$1, "walls"] = col[$1, "walls"] ($1 in nw ? ", " : "") $3; nw[$1] = 1
	}
	END {
		peer["cairn-qcow2-zlib"] = "qemu-img-zlib"; peer["cairn-qcow2-zstd"] = "qemu-img-zstd"; peer["cairn-qcow2-zstd-256k"] = "qemu-img-zstd"; peer["cairn-raw-zstd"] = "zstd-T0-3"; peer["cairn-raw-zstd-1"] = "zstd-T0-1"
		print "| step | wall s (runs) | CPU s | peak RSS MiB | output MiB | others\x27 CPU s | peer | peer wall / cairn | peer CPU / cairn | output / peer |"
		print "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
		for (i = 1; i <= k; i++) {
			s = order[i]; p = peer[s]
			w[s] = med(s, "wall"); c[s] = med(s, "cpu"); b[s] = med(s, "bytes")
		}
		for (i = 1; i <= k; i++) {
			s = order[i]; p = peer[s]
			if (p != "" && (p in seen)) r = sprintf("%s | %.2f× | %.2f× | %.3f×", p, w[p] / w[s], c[p] / c[s], b[s] / b[p])
			else r = "– | – | – | –"
			printf "| %s | %.2f (%s) | %.2f | %.0f | %.1f | %.1f | %s |\n", s, w[s], col[s, "walls"], c[s], med(s, "rss") / 1024, b[s] / 1048576, med(s, "other"), r
		}
		print ""
		if ("zstd-T0-1" in seen && "cairn-raw-zstd" in seen) printf "- cairn raw+zstd against zstd -T0 -1: its wall time / cairn\x27s %.2f× (above 1: cairn faster), output %.3f× its size\n", w["zstd-T0-1"] / w["cairn-raw-zstd"], b["cairn-raw-zstd"] / b["zstd-T0-1"]
		split("cairn-qcow2-zlib 4 cairn-qcow2-zstd 2", tg, " ")
		for (i = 1; i <= 3; i += 2) {
			s = tg[i]; p = peer[s]; f = tg[i + 1]
			if (!(s in seen) || !(p in seen)) continue
			printf "- %s %s ≥ %d× faster than %s: %.2f×\n", (w[p] >= f * w[s] ? "PASS" : "MISS"), s, f, p, w[p] / w[s]
			printf "- %s %s output ≤ 1.03× %s: %.3f×\n", (b[s] <= 1.03 * b[p] ? "PASS" : "MISS"), s, p, b[s] / b[p]
		}
		s = "cairn-qcow2-zstd-256k"; p = peer[s]
		if ((s in seen) && (p in seen)) printf "- 256 KiB clusters, the vault\x27s blocks copied (not the issue\x27s 64 KiB): %.2f× faster than %s, output %.3f×\n", w[p] / w[s], p, b[s] / b[p]
	}' "$tsv"
	echo "- cairn outputs checked (qemu-img check and compare for qcow2, zstd -d | cmp for raw): $check"
} | tee "$work/export.md"
rm -f "$xdir"/*.qcow2 "$xdir"/*.zst
[ "$check" = pass ]
