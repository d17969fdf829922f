#!/usr/bin/env bash
# cairn's backup benchmark (make bench): cairn against restic and borg on
# the same 2 GiB ext4 disk, a full backup and then an incremental one after
# a ~2% change, alternating the tools round by round, medians and ratios.
# Then checks that cairn restores both points bit for bit and verifies.
#
#   BENCH_ROUNDS=3   rounds (each tool, fresh repository, full + incremental)
#   BENCH_CHUNKS=1   also run bench/chunksize.sh
#   BENCH_TOOLS      tools to run (default "cairn restic borg-lz4 borg-zstd3")
# and the settings of bench/lib.sh (BENCH_DIR, BENCH_SEED, ...).
. "$(dirname "$0")/lib.sh"

rounds=${BENCH_ROUNDS:-3}
tools=${BENCH_TOOLS:-cairn restic borg-lz4 borg-zstd3}

bench_setup
make_disks
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

cur=$work/cur/disk.img
mkdir -p "$work/cur"
results=$work/results.tsv
printf 'tool\tround\tstep\twall\tcpu\trss_kb\trepo_bytes\tadded\tchanged\tother_cpu\n' >"$results"
rm -rf "$work/runs"


# prepare TOOL DIR creates an empty repository for TOOL in DIR (untimed).
prepare() {
	local t=$1 d=$2
	mkdir -p "$d"
	case $t in
	cairn) "$cairn" --vault "$d/repo" init >/dev/null ;;
	restic) RESTIC_CACHE_DIR=$d/cache restic -q -r "$d/repo" init >/dev/null ;;
	borg-*) BORG_BASE_DIR=$d/base borg init -e none "$d/repo" ;;
	esac
}

# backup TOOL DIR STEP runs one timed backup of $cur and appends a row.
backup() {
	local t=$1 d=$2 step=$3 added=- changed=-
	local cmd
	case $t in
	cairn) cmd=("$cairn" --vault "$d/repo" backup --name disk --json "$cur") ;;
	restic) cmd=(env RESTIC_CACHE_DIR="$d/cache" restic -q -r "$d/repo" backup "$cur") ;;
	borg-lz4) cmd=(env BORG_BASE_DIR="$d/base" borg create "$d/repo::$step" "$cur") ;;
	borg-zstd3) cmd=(env BORG_BASE_DIR="$d/base" borg create --compression "zstd,3" "$d/repo::$step" "$cur") ;;
	*) die "unknown tool $t" ;;
	esac
	# Inputs in the page cache first: the disk, and the repository with
	# its caches (the peers' local caches live in $d too).
	warm "$cur" "$d"
	timed "$d/$step" -- "${cmd[@]}"
	if [ "$t" = cairn ]; then
		added=$(json_field "$d/$step.out" added)
		changed=$(json_field "$d/$step.out" changed)
	fi
	local repo
	repo=$(dusize "$d/repo")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$step" "$wall" "$cpu" "$rss_kb" "$repo" "$added" "$changed" "$other_cpu" >>"$results"
	log "$(printf '%-10s round %d %-11s wall %6.2f s  cpu %6.2f s  rss %5d MiB  repo %6d MiB  (others: %.1f cpu s)' \
		"$t" "$r" "$step" "$wall" "$cpu" $((rss_kb / 1024)) $((repo >> 20)) "$other_cpu")"
}

for r in $(seq 1 "$rounds"); do
	for t in $tools; do
		d=$work/runs/r$r/$t
		prepare "$t" "$d"
		ln -f "$work/disk.img" "$cur"
		backup "$t" "$d" full
		ln -f "$work/disk2.img" "$cur"
		backup "$t" "$d" incremental
		# The last round's repositories stay for mount.sh and export.sh
		# (the cairn vault also for the checks below).
		if [ "$r" = "$rounds" ]; then
			case $t in
			restic) keep_repos restic "$d" ;;
			borg-lz4) keep_repos borg "$d" ;;
			esac
		else
			[ "$t" = cairn ] || rm -rf "$d/repo" "$d/cache" "$d/base"
		fi
	done
done

# Correctness: the last round's cairn vault restores both disks exactly.
check=pass
vault=$work/runs/r$rounds/cairn/repo
if [ -d "$vault" ]; then
	log "checking cairn: restore both points, cmp, verify --data"
	mapfile -t pts < <("$cairn" --vault "$vault" points disk 2>/dev/null | awk 'NR > 1 && $1 ~ /@/ { print $1 }')
	[ "${#pts[@]}" -eq 2 ] || pts=("disk@$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$work/runs/r$rounds/cairn/full.out" | head -1)" \
		"disk@$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$work/runs/r$rounds/cairn/incremental.out" | head -1)")
	rm -rf "$work/check"
	mkdir -p "$work/check"
	imgs=("$work/disk.img" "$work/disk2.img")
	for i in 0 1; do
		warm "$vault"
		timed "$work/check/restore$i" -- "$cairn" --vault "$vault" restore "${pts[$i]}" "$work/check/v$i.raw"
		restore_wall[i]=$wall
		if cmp -s "$work/check/v$i.raw" "${imgs[$i]}"; then
			log "restore ${pts[$i]}: identical to $(basename "${imgs[$i]}") (${wall} s)"
		else
			log "restore ${pts[$i]}: DIFFERS from $(basename "${imgs[$i]}")"
			check=FAIL
		fi
		rm -f "$work/check/v$i.raw"
	done
	if "$cairn" --vault "$vault" verify --data >"$work/check/verify.out" 2>&1; then
		log "cairn verify --data: ok"
	else
		cat "$work/check/verify.out" >&2
		check=FAIL
	fi
fi

[ -d "$vault" ] && keep_repos cairn "$work/runs/r$rounds/cairn"

changed4k=$(awk '$1 == 4096 { print $2 }' "$work/disk.diff")
{
	echo
	echo "## cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') vs restic $(restic version | awk '{ print $2 }') and borg $(borg --version | awk '{ print $2 }')"
	echo
	echo "Disk: 2 GiB ext4, $(($(du -B1 "$work/disk.img" | cut -f1) >> 20)) MiB allocated; incremental after $nblocks scattered 1 MiB overwrites and $new_mb MiB of new files (seed $seed)."
	echo "$(nproc) cores, $(($(awk '/MemTotal/ { print $2 }' /proc/meminfo) >> 20)) GiB; $rounds rounds, medians; every input (disk, repository, caches) read once before each timed step."
	echo "Load average at start: $load_start; at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times; CPU times less so)."
	echo
	"$benchtool" report -changed4k "$changed4k" "$results"
	[ -z "${restore_wall[0]:-}" ] || echo "- cairn restore (from a warm vault): full point ${restore_wall[0]} s, incremental point ${restore_wall[1]} s"
	echo "- cairn correctness (restore both points, cmp, verify --data): $check"
} | tee "$work/report.md"

# Mount reads (issue 3), many small files (issue 4), exports (issue 5),
# NBD exports, incrementals from dirty bitmaps over NBD (issue 17),
# index rebuild, garbage collection.
if [ "${BENCH_MORE:-1}" = 1 ]; then
	"$root/integration/bench/mount.sh"
	"$root/integration/bench/files.sh"
	"$root/integration/bench/export.sh"
	"$root/integration/bench/nbd.sh"
	"$root/integration/bench/repair.sh"
	"$root/integration/bench/bitmap.sh"
	"$root/integration/bench/gc.sh"
fi
if [ "${BENCH_CHUNKS:-0}" = 1 ]; then
	"$root/integration/bench/chunksize.sh"
fi
[ "$check" = pass ]
