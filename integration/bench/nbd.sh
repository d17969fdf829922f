#!/usr/bin/env bash
# NBD exports of one point (make bench, or alone): cairn nbd serving the
# latest point of the kept cairn vault (disk2.img) against qemu-nbd -r
# serving qcow2 images exported from the same point by cairn (clusters
# zstd-compressed like the vault's blocks, and uncompressed), in the same
# run, alternating, medians. Per server and round:
#   - time to first byte: from starting the server to the first 4 KiB
#     read answered (benchtool nbdwait);
#   - 4 KiB random reads at seeded offsets inside the data, 1 and 8
#     readers on one connection (benchtool nbdreads: reads/s, p50, p99,
#     every byte checked against the disk): cold (a fresh server, page
#     cache dropped, the vault or image read once), then warm (the same
#     offsets again, same server);
#   - qemu-img convert -O raw from the export, cold (its wall time, its
#     CPU and the server's), then cmp.
#
#   BENCH_NBD_ROUNDS=3   rounds
#   BENCH_NBD_READS=2000 random reads per measurement
#   BENCH_NBD_MB         when set, a disk of that many MiB (ext4 of /usr/share
#                        files) in a vault of its own instead of the kept
#                        repositories: a quick run without restic and borg
. "$(dirname "$0")/lib.sh"

rounds=${BENCH_NBD_ROUNDS:-3}
nreads=${BENCH_NBD_READS:-2000}

out=$work/nbd
if [ -n "${BENCH_NBD_MB:-}" ]; then
	# The parts of bench_setup this needs, without restic and borg.
	case "$work" in "$root" | "$root"/*) die "BENCH_DIR must be outside the repository" ;; esac
	mkdir -p "$work/bin"
	[ -x "$cairn" ] || die "$cairn missing: run make build"
	(cd "$root" && go build -o "$benchtool" ./integration/bench/benchtool) || die "cannot build integration/bench/benchtool"
	small=$work/nbd-small
	img=$small/disk.img
	vault=$small/vault
	want="mb=$BENCH_NBD_MB cairn=$(sha256sum <"$cairn" | cut -c1-16)"
	if [ "$(cat "$small/stamp" 2>/dev/null)" != "$want" ]; then
		log "making a ${BENCH_NBD_MB} MiB ext4 disk of /usr/share files and its vault"
		rm -rf "$small"
		mkdir -p "$small/tree"
		find /usr/share -type f -size -4M ! -name "$(printf '*\n*')" -printf '%s\t%P\n' | sort -t "$(printf '\t')" -k2,2 |
			awk -F '\t' -v max=$((BENCH_NBD_MB * 1048576 * 6 / 10)) 'sum + $1 <= max { sum += $1; print $2 }' >"$small/files"
		tar -C /usr/share --no-recursion -cf - -T "$small/files" | tar -C "$small/tree" -xf -
		E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -U 6b3c5a52-2d0e-4f9b-9a57-0c2f4c7f1e10 -d "$small/tree" "$img" "${BENCH_NBD_MB}M"
		rm -rf "$small/tree"
		fallocate -d "$img"
		"$cairn" --vault "$vault" init >/dev/null
		"$cairn" --vault "$vault" backup --name disk "$img" >/dev/null
		echo "$want" >"$small/stamp"
	fi
else
	bench_setup
	make_disks
	ensure_repos
	vault=$repos/cairn/repo
	img=$work/disk2.img
fi
for t in qemu-img qemu-nbd; do command -v "$t" >/dev/null || die "$t missing: run integration/install-deps.sh"; done

size=$(stat -c %s "$img")
rm -rf "$out"
mkdir -p "$out"
log "exporting disk@latest as qcow2 (zstd, and uncompressed) for qemu-nbd (untimed)"
"$cairn" --vault "$vault" export disk@latest --format qcow2 --compress zstd -o "$out/zstd.qcow2"
"$cairn" --vault "$vault" export disk@latest --format qcow2 --compress none -o "$out/plain.qcow2"
tsv=$work/nbd.tsv
printf 'server\tround\tmetric\tvalue\n' >"$tsv"
row() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$tsv"; }

sock=$out/nbd.sock
uri="nbd+unix:///disk?socket=$sock"
spid=
# serve SERVER starts it in the background on $sock and sets ttfb.
serve() {
	local t0
	rm -f "$sock"
	t0=$(now)
	case $1 in
	cairn) "$cairn" --vault "$vault" nbd disk@latest --socket "$sock" --export-name disk >"$out/cairn.uri" 2>>"$out/cairn.log" & ;;
	qemu-nbd-zstd) qemu-nbd -r -t -e 16 -f qcow2 -x disk -k "$sock" "$out/zstd.qcow2" 2>>"$out/qemu-nbd.log" & ;;
	qemu-nbd-plain) qemu-nbd -r -t -e 16 -f qcow2 -x disk -k "$sock" "$out/plain.qcow2" 2>>"$out/qemu-nbd.log" & ;;
	esac
	spid=$!
	ttfb=$("$benchtool" nbdwait -uri "$uri" -since "$t0" | awk '{ print $2 }') || die "$1 did not serve"
}
# server_cpu prints the CPU seconds (user + system) the server used so far.
server_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$spid/stat"
}
stop() {
	kill -TERM "$spid"
	wait "$spid" || true
	spid=
}
trap '[ -z "$spid" ] || kill "$spid" 2>/dev/null' EXIT

# inputs SERVER prints what a server reads: the vault, or its image.
inputs() {
	case $1 in
	cairn) echo "$vault" ;;
	qemu-nbd-zstd) echo "$out/zstd.qcow2" ;;
	qemu-nbd-plain) echo "$out/plain.qcow2" ;;
	esac
}

# reads SERVER ROUND WHEN J: one random-read measurement, as rows.
reads() {
	local s=$1 r=$2 when=$3 j=$4 line
	line=$("$benchtool" nbdreads -uri "$uri" -image "$img" -n "$nreads" -j "$j" -seed $((seed * 1000 + r * 10 + j)) 2>>"$out/reads.err") ||
		die "$s: nbdreads failed: $line"
	row "$s" "$r" "rand${j}_${when}_iops" "$(awk '{ print $6 }' <<<"$line")"
	row "$s" "$r" "rand${j}_${when}_p50_us" "$(awk '{ print $8 }' <<<"$line")"
	row "$s" "$r" "rand${j}_${when}_p99_us" "$(awk '{ print $10 }' <<<"$line")"
	row "$s" "$r" "failed" "$(awk '{ print $12 }' <<<"$line")"
}

servers="cairn qemu-nbd-zstd qemu-nbd-plain"
check=pass
for r in $(seq 1 "$rounds"); do
	for s in $servers; do
		# Time to first byte and random reads, cold then warm; the
		# 8-reader run draws other offsets, so it starts cold as well.
		drop_caches "$(inputs "$s")"
		serve "$s"
		row "$s" "$r" ttfb "$ttfb"
		reads "$s" "$r" cold 1
		reads "$s" "$r" warm 1
		stop
		drop_caches "$(inputs "$s")"
		serve "$s"
		reads "$s" "$r" cold 8
		reads "$s" "$r" warm 8
		stop
		# Sequential: qemu-img convert of the whole disk, cold.
		rm -f "$out/conv.raw"
		drop_caches "$(inputs "$s")"
		serve "$s"
		before=$(server_cpu)
		timed "$out/conv-$s-$r" -- qemu-img convert -O raw "$uri" "$out/conv.raw"
		row "$s" "$r" seq_server_cpu_s "$(awk -v a="$before" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')"
		stop
		row "$s" "$r" seq_s "$wall"
		row "$s" "$r" seq_cpu_s "$cpu"
		cmp -s "$out/conv.raw" "$img" || { log "$s: qemu-img convert output DIFFERS from the disk"; check=FAIL; }
		rm -f "$out/conv.raw"
		log "$(awk -F '\t' -v s="$s" -v r="$r" '$1 == s && $2 == r && $3 != "failed" { printf "%s %s  ", $3, $4 }' "$tsv")"
	done
done
# Errors cairn nbd logged (its server's lines are "... nbd: ...").
if grep -q 'nbd:' "$out/cairn.log" 2>/dev/null; then
	log "cairn nbd logged errors:"
	grep 'nbd:' "$out/cairn.log" | sed 's/^/  /' >&2
	check=FAIL
fi

{
	echo
	echo "## NBD export: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') nbd vs $(qemu-nbd --version | head -1) serving qcow2 exported from the same point"
	echo
	echo "Latest point ($(basename "$img"), $((size >> 20)) MiB, $(($(du -B1 "$img" | cut -f1) >> 20)) MiB allocated); qcow2 peers: zstd clusters ($(($(stat -c %s "$out/zstd.qcow2") >> 20)) MiB) and uncompressed ($(($(stat -c %s "$out/plain.qcow2") >> 20)) MiB); $rounds rounds, medians; $nreads reads of 4 KiB per random run, on one connection."
	echo "Cold: a fresh server after dropping the page cache and reading its input once; warm: the same offsets again on the same server. Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	awk -F '\t' '
	function median(k,   n, i, j, t, a) {
		n = split(vals[k], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR > 1 { vals[$1 SUBSEP $3] = vals[$1 SUBSEP $3] " " $4; if (!($1 in seen)) { seen[$1] = 1; order[++ns] = $1 } }
	END {
		split("ttfb rand1_cold_iops rand1_cold_p50_us rand1_cold_p99_us rand1_warm_iops rand1_warm_p50_us rand1_warm_p99_us rand8_cold_iops rand8_cold_p50_us rand8_cold_p99_us rand8_warm_iops rand8_warm_p50_us rand8_warm_p99_us seq_s seq_cpu_s seq_server_cpu_s", ms, " ")
		print "| server | first byte s | 1 reader cold: reads/s, p50, p99 µs | 1 reader warm | 8 readers cold | 8 readers warm | qemu-img convert s (its CPU s, server CPU s) | failed reads |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= ns; i++) {
			s = order[i]
			for (m in ms) med[s, ms[m]] = median(s SUBSEP ms[m])
			nf = split(vals[s SUBSEP "failed"], fa, " "); fs = 0; for (m = 1; m <= nf; m++) fs += fa[m]
			printf "| %s | %.3f", s, med[s, "ttfb"]
			split("rand1_cold rand1_warm rand8_cold rand8_warm", ks, " ")
			for (k = 1; k <= 4; k++) printf " | %.0f, %.0f, %.0f", med[s, ks[k] "_iops"], med[s, ks[k] "_p50_us"], med[s, ks[k] "_p99_us"]
			printf " | %.2f (%.2f, %.2f) | %d |\n", med[s, "seq_s"], med[s, "seq_cpu_s"], med[s, "seq_server_cpu_s"], fs
		}
		print ""
		if (!("cairn" in seen)) exit
		for (i = 1; i <= ns; i++) {
			p = order[i]; if (p == "cairn") continue
			printf "- against %s: first byte %.2f× its time; random reads/s 1 reader cold %.2f×, warm %.2f×; 8 readers cold %.2f×, warm %.2f×; p99 1 reader cold %.2f× its; convert %.2f× faster\n", p,
				med["cairn", "ttfb"] / med[p, "ttfb"],
				med["cairn", "rand1_cold_iops"] / med[p, "rand1_cold_iops"], med["cairn", "rand1_warm_iops"] / med[p, "rand1_warm_iops"],
				med["cairn", "rand8_cold_iops"] / med[p, "rand8_cold_iops"], med["cairn", "rand8_warm_iops"] / med[p, "rand8_warm_iops"],
				med["cairn", "rand1_cold_p99_us"] / med[p, "rand1_cold_p99_us"], med[p, "seq_s"] / med["cairn", "seq_s"]
		}
	}' "$tsv"
	echo "- every random read checked against the disk, and each qemu-img convert output cmp-ed with it: $check"
	[ ! -s "$out/reads.err" ] || sed 's/^/- /' "$out/reads.err"
} | tee "$work/nbd.md"
rm -f "$out"/*.qcow2
[ "$check" = pass ]
