#!/usr/bin/env bash
# cairn chunk sizes compared on the bench disk (built by bench/lib.sh, shared
# with bench/run.sh): for each size, a fresh vault, a full backup of
# disk.img and an incremental one of disk2.img (same path), the bytes the
# incremental added, vault sizes, and random 4 KiB reads of the second
# point with a one-byte block cache (every read decompresses a block).
#
#   BENCH_CHUNK_SIZES  sizes to try (default "64K 256K 1M 4M")
#   BENCH_CHUNK_ROUNDS rounds over all sizes (default 2)
#   BENCH_READS        random reads per size (default 2000)
. "$(dirname "$0")/lib.sh"

sizes=${BENCH_CHUNK_SIZES:-64K 256K 1M 4M}
rounds=${BENCH_CHUNK_ROUNDS:-2}
reads=${BENCH_READS:-2000}

bench_setup
make_disks

cur=$work/cur/disk.img
mkdir -p "$work/cur"
results=$work/chunks.tsv
printf 'chunk\tround\tfull_wall\tincr_wall\tallocated\tincr_added\tvault_full\tvault_both\treads_per_s\tus_per_read\n' >"$results"
rm -rf "$work/chunks"

for r in $(seq 1 "$rounds"); do
	for cs in $sizes; do
		d=$work/chunks/r$r/$cs
		mkdir -p "$d"
		"$cairn" --vault "$d/vault" init --chunk-size "$cs" >/dev/null
		ln -f "$work/disk.img" "$cur"
		warm "$cur" "$d/vault"
		timed "$d/full" -- "$cairn" --vault "$d/vault" backup --name disk --json "$cur"
		full_wall=$wall
		allocated=$(json_field "$d/full.out" allocated)
		vault_full=$(dusize "$d/vault")
		ln -f "$work/disk2.img" "$cur"
		warm "$cur" "$d/vault"
		timed "$d/incr" -- "$cairn" --vault "$d/vault" backup --name disk --json "$cur"
		incr_wall=$wall
		added=$(json_field "$d/incr.out" added)
		vault_both=$(dusize "$d/vault")
		warm "$d/vault"
		"$benchtool" randread -vault "$d/vault" -point disk@latest -n "$reads" -seed "$seed" >"$d/randread.out"
		rps=$(sed -n 's/.*reads_per_s=\([0-9.]*\).*/\1/p' "$d/randread.out")
		us=$(sed -n 's/.*us_per_read=\([0-9.]*\).*/\1/p' "$d/randread.out")
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cs" "$r" "$full_wall" "$incr_wall" "$allocated" "$added" \
			"$vault_full" "$vault_both" "$rps" "$us" >>"$results"
		log "$(printf 'chunk %-4s round %d: full %6.2f s, incremental %5.2f s added %4d MiB, vault %4d MiB, %5.0f reads/s' \
			"$cs" "$r" "$full_wall" "$incr_wall" $((added >> 20)) $((vault_both >> 20)) "$rps")"
		rm -rf "$d/vault"
	done
done

{
	echo
	echo "## cairn chunk sizes ($rounds rounds, medians; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
	echo
	"$benchtool" chunks "$results"
	echo
	echo "Full MB/s is allocated bytes (10^6) per wall second. Random reads: $reads single-threaded 4 KiB ReadAt calls at seeded offsets inside stored data, one-byte block cache, vault files in the page cache."
} | tee "$work/chunks.md"
