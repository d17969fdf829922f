# Shared by bench/run.sh and bench/chunksize.sh (sourced, not run).
#
# Settings (environment):
#   BENCH_DIR     work directory, never inside the repository (default /var/tmp/cairn-bench)
#   BENCH_SEED    seed of every random choice (default 42)
#   BENCH_BLOCKS  scattered 1 MiB blocks overwritten in the second disk (default 24)
#   BENCH_NEW_MB  MiB of new files written into the second disk through debugfs (default 8)
#   CAIRN_BIN     the cairn binary (default bin/cairn, built by make build)

set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${BENCH_DIR:-/var/tmp/cairn-bench}
seed=${BENCH_SEED:-42}
nblocks=${BENCH_BLOCKS:-24}
new_mb=${BENCH_NEW_MB:-8}
cairn=${CAIRN_BIN:-$root/bin/cairn}
benchtool=$work/bin/benchtool

# Bump when the disk recipe changes, so old disks are rebuilt.
disk_recipe=2
change_recipe=4
# Bytes of real files copied into the test disk.
disk_bytes=1550000000

log() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}

bench_setup() {
	case "$work" in "$root" | "$root"/*) die "BENCH_DIR must be outside the repository" ;; esac
	mkdir -p "$work/bin"
	[ -x "$cairn" ] || die "$cairn missing: run make build"
	for t in mkfs.ext4 debugfs restic borg /usr/bin/time; do
		command -v "$t" >/dev/null || die "$t missing: run scripts/install-deps.sh"
	done
	(cd "$root" && go build -o "$benchtool" ./integration/bench/benchtool) || die "cannot build integration/bench/benchtool"
}

# list_sources prints "SIZE<TAB>PATH" of the files the test disk is made
# of, then the donor files that feed the change, in a fixed order: every
# regular file of /usr/bin, then /usr/share, then /usr/lib, each sorted by
# path (bytewise), names with a newline or tab left out. The first files up
# to $disk_bytes go into the disk; the rest are donors.
list_sources() {
	local d
	for d in /usr/bin /usr/share /usr/lib; do
		find "$d" -type f ! -name "$(printf '*\n*')" ! -name "$(printf '*\t*')" -printf '%s\t%p\n' |
			sort -t "$(printf '\t')" -k2,2
	done
}

# make_disks builds $work/disk.img (v1) and $work/disk2.img (v2), unless
# stamps say the ones there were made by this recipe from the same files
# (v2 alone is remade when only the change settings differ).
make_disks() {
	local v1=$work/disk.img v2=$work/disk2.img all=$work/sources.all
	list_sources >"$all"
	local want1 want2
	want1="recipe=$disk_recipe bytes=$disk_bytes list=$(sha256sum <"$all" | cut -c1-16)"
	want2="$want1 change=$change_recipe seed=$seed blocks=$nblocks new_mb=$new_mb"
	awk -F '\t' -v max="$disk_bytes" -v files="$work/files.list" -v donors="$work/donors.list" '
		!full && sum + $1 <= max { sum += $1; n++; print substr($2, 2) > files; next }
		{ full = 1; print > donors }
		END { printf "disk content: %d bytes in %d files\n", sum, n > "/dev/stderr" }' "$all"
	if [ -f "$v1" ] && [ "$(cat "$work/disk.stamp" 2>/dev/null)" = "$want1" ]; then
		log "reusing disk.img ($want1)"
	else
		rm -f "$work/disk.stamp" "$work/disk2.stamp" "$v1" "$v2"
		log "copying $(wc -l <"$work/files.list") files into $work/tree"
		rm -rf "$work/tree"
		mkdir -p "$work/tree"
		tar -C / --no-recursion -cf - -T "$work/files.list" | tar -C "$work/tree" -xf -
		log "mkfs.ext4 -d tree disk.img 2G (takes a few minutes)"
		# A fixed UUID and clock keep the image the same from build to build.
		E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -U 6b3c5a52-2d0e-4f9b-9a57-0c2f4c7f1e10 -d "$work/tree" "$v1" 2G
		rm -rf "$work/tree"
		# Zeros that mkfs wrote become holes, as in the copy made below.
		fallocate -d "$v1"
		echo "$want1" >"$work/disk.stamp"
	fi
	if [ -f "$v2" ] && [ "$(cat "$work/disk2.stamp" 2>/dev/null)" = "$want2" ]; then
		log "reusing disk2.img"
		return
	fi
	rm -f "$work/disk2.stamp" "$v2"
	log "making disk2.img: $new_mb MiB of new files, $nblocks scattered 1 MiB blocks overwritten"
	cp --sparse=always "$v1" "$v2"
	change_disk "$v1" "$v2"
	"$benchtool" diff "$v1" "$v2" >"$work/disk.diff"
	echo "$want2" >"$work/disk2.stamp"
}

# change_disk makes v2 from a copy of v1: first new files through the
# filesystem (debugfs -w), then scattered 1 MiB overwrites that each lie
# inside one regular file of v1, filled from the middle of donor files.
change_disk() {
	local v1=$1 v2=$2

	# Donors of the overwrites: files of at least 1 MiB left out of the
	# disk, taken at an even stride through their list for variety.
	local m
	m=$(awk -F '\t' '$1 >= 1048576' "$work/donors.list" | wc -l)
	awk -F '\t' -v step=$((m / (nblocks + 32) > 1 ? m / (nblocks + 32) : 1)) \
		'$1 >= 1048576 && k++ % step == 0' "$work/donors.list" >"$work/donors.big"
	[ "$(wc -l <"$work/donors.big")" -gt "$nblocks" ] || die "not enough donor files"

	# New files: donors from 64 KiB to 2 MiB, also at a stride.
	m=$(awk -F '\t' '$1 >= 65536 && $1 < 2097152' "$work/donors.list" | wc -l)
	awk -F '\t' -v step=$((m / 64 > 1 ? m / 64 : 1)) \
		'$1 >= 65536 && $1 < 2097152 && k++ % step == 0' "$work/donors.list" >"$work/donors.new"

	local cmds=$work/debugfs.cmds written=0 size path n=0
	echo "mkdir /cairn-bench-new" >"$cmds"
	while IFS=$'\t' read -r size path; do
		[ "$written" -ge $((new_mb << 20)) ] && break
		n=$((n + 1))
		echo "write $path /cairn-bench-new/$n-$(basename "$path")" >>"$cmds"
		written=$((written + size))
	done <"$work/donors.new"
	debugfs -w -f "$cmds" "$v2" >/dev/null 2>"$work/debugfs.err" || {
		cat "$work/debugfs.err" >&2
		die "debugfs write failed"
	}
	log "wrote $n new files, $((written >> 10)) KiB, into /cairn-bench-new"

	# The middle 1 MiB of each big donor, in 4 KiB units.
	awk -F '\t' '{ printf "%d\t%s\n", ($1 - 1048576) / 2 / 4096, $2 }' "$work/donors.big" >"$work/pieces.big"
	overwrite_blocks "$v1" "$v2" "$seed" "$nblocks" "$work/pieces.big"
}

# overwrite_blocks IMAGE TARGET SEED N PIECES overwrites N scattered 1 MiB
# ranges of TARGET, at offsets drawn with SEED (4 KiB-aligned) that each lie
# inside one data extent of a regular file of IMAGE, so the filesystem stays
# consistent (e2fsck -fn passes). TARGET is IMAGE itself (changed in place)
# or a copy of it with the same files where IMAGE has them. The i-th range
# is filled from line i of PIECES, "SKIP<TAB>PATH": 1 MiB of the file PATH
# from SKIP 4 KiB units on. Scratch files go to $work.
overwrite_blocks() {
	local v1=$1 v2=$2 s=$3 nb=$4 pieces=$5 bs
	bs=$(debugfs -R stats "$v1" 2>/dev/null | awk '/^Block size:/ { print $3 }')
	[ -n "$bs" ] || die "cannot read the block size of $v1"
	[ "$(wc -l <"$pieces")" -ge "$nb" ] || die "$pieces: fewer than $nb pieces"

	# Candidate ranges, then keep those that lie inside one physical extent
	# of file data of a regular file.
	"$benchtool" offsets -seed "$s" -n $((nb * 20)) -len 1048576 -align "$bs" "$v1" >"$work/cand"
	awk -v bs="$bs" 'BEGIN { printf "icheck" } { printf " %d", int($1 / bs) } END { print "" }' "$work/cand" >"$work/icheck.cmd"
	debugfs -f "$work/icheck.cmd" "$v1" 2>/dev/null | awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ { print $1, $2 }' >"$work/owners"
	awk -v bs="$bs" 'NR == FNR { owner[$1] = $2; next }
		owner[int($1 / bs)] != "" { print $1, owner[int($1 / bs)] }' "$work/owners" "$work/cand" >"$work/cand.owned"
	awk '{ printf "stat <%s>\n", $2 }' "$work/cand.owned" | sort -u >"$work/stat.cmd"
	# "INODE PSTART PEND" for each data extent of each regular file.
	debugfs -f "$work/stat.cmd" "$v1" 2>/dev/null | awk '
		/^Inode: / { ino = ($4 == "regular") ? $2 : ""; next }
		ino != "" && /^\(/ {
			n = split($0, tok, ", ")
			for (i = 1; i <= n; i++) {
				t = tok[i]
				if (index(t, "(ETB") == 1) continue
				p = substr(t, index(t, "):") + 2)
				sub(/[^0-9-].*/, "", p)
				d = index(p, "-")
				if (d) print ino, substr(p, 1, d - 1), substr(p, d + 1)
				else print ino, p, p
			}
		}' >"$work/extents"
	awk -v bs="$bs" 'NR == FNR { k = $1 SUBSEP (++cnt[$1]); ps[k] = $2; pe[k] = $3; next }
		{ b0 = int($1 / bs); b1 = int(($1 + 1048575) / bs)
		  for (i = 1; i <= cnt[$2]; i++) { k = $2 SUBSEP i; if (ps[k] <= b0 && b1 <= pe[k]) { print $1; break } } }' \
		"$work/extents" "$work/cand.owned" | head -n "$nb" >"$work/offsets"
	[ "$(wc -l <"$work/offsets")" -eq "$nb" ] || die "found only $(wc -l <"$work/offsets") ranges inside files"

	local off skip path i=0
	while read -r off; do
		i=$((i + 1))
		IFS=$'\t' read -r skip path < <(sed -n "${i}p" "$pieces")
		dd if="$path" of="$v2" bs=4096 skip="$skip" seek=$((off / 4096)) count=256 conv=notrunc status=none
	done <"$work/offsets"
}

# warm reads every file given (directories recursively) once, so a timed
# step starts with its inputs in the page cache, after waiting for a quiet
# machine.
warm() {
	local p
	sync
	quiet
	for p in "$@"; do
		[ -e "$p" ] || continue
		find "$p" -type f -exec cat {} + >/dev/null
	done
}

# busy_jiffies prints the machine's busy CPU time so far, in clock ticks.
busy_jiffies() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# quiet waits, up to $BENCH_QUIET_WAIT seconds (default 20), until the
# other work on the machine uses less than a quarter of a core over two
# seconds, so that a timed step does not share the cores. It goes on
# anyway after the wait and says so.
quiet() {
	local limit=${BENCH_QUIET_WAIT:-20} t0=$SECONDS a b hz
	hz=$(getconf CLK_TCK)
	while :; do
		a=$(busy_jiffies)
		sleep 2
		b=$(busy_jiffies)
		[ $((b - a)) -lt $((hz / 2)) ] && return
		if [ $((SECONDS - t0)) -ge "$limit" ]; then
			log "machine still busy ($(((b - a) * 50 / hz))% of a core) after ${limit}s; measuring anyway"
			return
		fi
	done
}

# timed OUT -- CMD... runs CMD under /usr/bin/time -v and sets wall, cpu
# (user+sys, s), rss_kb and other_cpu (s of CPU used by the rest of the
# machine meanwhile). CMD's stdout goes to OUT.out.
timed() {
	local out=$1
	shift 2
	local b0 b1
	b0=$(busy_jiffies)
	if ! /usr/bin/time -v -o "$out.time" "$@" >"$out.out" 2>"$out.err"; then
		cat "$out.err" "$out.time" >&2
		die "failed: $*"
	fi
	b1=$(busy_jiffies)
	wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s }' "$out.time")
	cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$out.time")
	rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$out.time")
	# CPU that other processes used while the step ran.
	other_cpu=$(awk -v j=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" -v own="$cpu" \
		'BEGIN { x = j / hz - own; printf "%.2f", x < 0 ? 0 : x }')
}

# json_field FILE NAME prints the first numeric field NAME of a JSON file.
json_field() {
	grep -m1 -o "\"$2\": *[0-9.e+-]*" "$1" | sed 's/.*: *//'
}

dusize() { du -sb "$1" | cut -f1; }

# The repositories the mount and export benchmarks read: $work/repos/TOOL
# (cairn, restic, borg) each hold a full backup of disk.img and then an
# incremental one of disk2.img, made from the path $work/cur/disk.img, so
# their latest point is disk2.img. run.sh leaves its last round's
# repositories here; ensure_repos makes them (untimed) when they are
# missing or were made from other disks or another cairn binary.
repos=$work/repos

repos_want() {
	echo "$(cat "$work/disk2.stamp") cairn=$(sha256sum <"$cairn" | cut -c1-16)"
}

export RESTIC_PASSWORD=cairn-bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

ensure_repos() {
	local want
	want=$(repos_want)
	if [ "$(cat "$repos/stamp" 2>/dev/null)" = "$want" ]; then
		log "reusing the repositories in $repos"
		return
	fi
	log "making cairn, restic and borg repositories of disk.img then disk2.img (untimed)"
	rm -rf "$repos"
	mkdir -p "$repos/cairn" "$repos/restic" "$repos/borg" "$work/cur"
	"$cairn" --vault "$repos/cairn/repo" init >/dev/null
	RESTIC_CACHE_DIR=$repos/restic/cache restic -q -r "$repos/restic/repo" init >/dev/null
	BORG_BASE_DIR=$repos/borg/base borg init -e none "$repos/borg/repo"
	local img step
	for img in disk.img disk2.img; do
		step=full
		[ "$img" = disk.img ] || step=incremental
		ln -f "$work/$img" "$work/cur/disk.img"
		"$cairn" --vault "$repos/cairn/repo" backup --name disk "$work/cur/disk.img" >/dev/null
		RESTIC_CACHE_DIR=$repos/restic/cache restic -q -r "$repos/restic/repo" backup "$work/cur/disk.img" >/dev/null
		BORG_BASE_DIR=$repos/borg/base borg create "$repos/borg/repo::$step" "$work/cur/disk.img"
	done
	echo "$want" >"$repos/stamp"
}

# keep_repos TOOL DIR moves a run's repository DIR (repo, caches) to
# $repos/TOOL; once all three are there, the stamp is written.
keep_repos() {
	rm -rf "${repos:?}/$1" "$repos/stamp"
	mkdir -p "$repos"
	mv "$2" "$repos/$1"
	if [ -d "$repos/cairn" ] && [ -d "$repos/restic" ] && [ -d "$repos/borg" ]; then
		repos_want >"$repos/stamp"
	fi
}

# drop_caches empties the page cache and then reads the given inputs (the
# repository, its caches) once, so that what follows pays for its own work
# (a mount's decompression, FUSE) but not for refilling the vault from the
# virtual disk.
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	warm "$@"
}

# now prints the time in seconds with nanoseconds.
now() { date +%s.%N; }
