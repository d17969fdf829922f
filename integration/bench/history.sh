#!/usr/bin/env bash
# A shared history of points for the rows that need many (repair, gc).
# Row scripts source this file instead of lib.sh (it sources lib.sh); run
# alone, it builds the history if needed and exits.
#
# Starting from a sparse copy of disk.img, $BENCH_HISTORY steps; each
# overwrites about 2% of the allocated data in place (scattered 1 MiB
# ranges inside regular files' data, as change_disk does for disk2.img,
# with seed BENCH_SEED*1000+STEP, filled with 1 MiB pieces of donor files
# that no other step uses), and is then backed up by cairn, restic and borg
# (lz4, init -e none), so the three repositories hold the same history:
#
#   $work/history/disk.img          the disk as the last step left it (= the latest point)
#   $work/history/cairn/repo        cairn vault, resource "disk"
#   $work/history/restic/{repo,cache}
#   $work/history/borg/{repo,base}  archives p01, p02, ...
#   $work/history/points.tsv        per step: seed, sha256 of the disk, point ids, repository bytes
#   $work/history/stamp             what the history was made from; ensure_history rebuilds on a change
#
# The build is untimed. Destructive rows (repair, gc) copy a repository
# with history_copy and work on the copy.
#
#   BENCH_HISTORY=30        steps (points per repository)
#   BENCH_HISTORY_BLOCKS    1 MiB overwrites per step (default: 2% of disk.img's allocated bytes)
# and the settings of lib.sh (BENCH_DIR, BENCH_SEED, CAIRN_BIN).
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hist=$work/history
hsteps=${BENCH_HISTORY:-30}
# Bump when the history recipe changes, so old histories are rebuilt.
history_recipe=1

# history_blocks prints the 1 MiB overwrites per step.
history_blocks() {
	if [ -n "${BENCH_HISTORY_BLOCKS:-}" ]; then
		echo "$BENCH_HISTORY_BLOCKS"
	else
		# 2% of the allocated bytes, rounded to whole MiB.
		du -B1 "$work/disk.img" | awk '{ printf "%d\n", $1 * 0.02 / 1048576 + 0.5 }'
	fi
}

history_want() {
	echo "history=$history_recipe steps=$hsteps blocks=$(history_blocks) seed=$seed $(cat "$work/disk.stamp")" \
		"cairn=$(sha256sum <"$cairn" | cut -c1-16) restic=$(restic version | awk '{ print $2 }') borg=$(borg --version | awk '{ print $2 }')"
}

# history_sum prints the SHA-256 of its input in hex, with openssl when
# there is one (sha256sum is 3-4 times slower here).
history_sum() {
	if command -v openssl >/dev/null; then
		openssl dgst -sha256 -r | cut -d' ' -f1
	else
		sha256sum | cut -d' ' -f1
	fi
}

# history_pieces writes $hist/pieces: every whole 1 MiB piece of every
# donor file of at least 1 MiB, as "SKIP<TAB>PATH" (SKIP in 4 KiB units),
# first pieces of all donors first, then second pieces, and so on, so that
# consecutive lines come from different files. Step k uses the lines after
# (k-1)*blocks; they wrap around when there are too few.
history_pieces() {
	awk -F '\t' '$1 >= 1048576 { n = int($1 / 1048576); for (j = 0; j < n; j++) printf "%d\t%d\t%s\n", j, j * 256, $2 }' \
		"$work/donors.list" | sort -s -t "$(printf '\t')" -k1,1n | cut -f2- >"$hist/pieces"
}

# ensure_history builds the history unless its stamp says the one there
# was made from the same disk, settings and binaries. Call after
# bench_setup and make_disks.
ensure_history() {
	local want
	want=$(history_want)
	if [ -f "$hist/disk.img" ] && [ "$(cat "$hist/stamp" 2>/dev/null)" = "$want" ]; then
		log "reusing the history in $hist ($hsteps points)"
		return
	fi
	local nb npieces k s p0 sum pt snap
	nb=$(history_blocks)
	log "building a history of $hsteps points, $nb MiB overwritten per step, backed up by cairn, restic and borg (untimed)"
	rm -rf "$hist"
	mkdir -p "$hist/cairn" "$hist/restic" "$hist/borg"
	"$cairn" --vault "$hist/cairn/repo" init >/dev/null
	RESTIC_CACHE_DIR=$hist/restic/cache restic -q -r "$hist/restic/repo" init >/dev/null
	BORG_BASE_DIR=$hist/borg/base borg init -e none "$hist/borg/repo"
	cp --sparse=always "$work/disk.img" "$hist/disk.img"
	history_pieces
	npieces=$(wc -l <"$hist/pieces")
	[ "$npieces" -ge "$nb" ] || die "only $npieces donor pieces of 1 MiB"
	[ "$npieces" -ge $((nb * hsteps)) ] ||
		log "only $npieces donor pieces for $((nb * hsteps)) overwrites: later steps reuse pieces"
	printf 'step\tseed\tsha256\tcairn\trestic\tborg\tcairn_bytes\trestic_bytes\tborg_bytes\n' >"$hist/points.tsv"
	for k in $(seq 1 "$hsteps"); do
		s=$((seed * 1000 + k))
		p0=$(((k - 1) * nb))
		awk -v a="$p0" -v nb="$nb" -v n="$npieces" '{ l[NR - 1] = $0 } END { for (i = 0; i < nb; i++) print l[(a + i) % n] }' \
			"$hist/pieces" >"$hist/step.pieces"
		overwrite_blocks "$hist/disk.img" "$hist/disk.img" "$s" "$nb" "$hist/step.pieces"
		sum=$(history_sum <"$hist/disk.img")
		"$cairn" --vault "$hist/cairn/repo" backup --name disk --json "$hist/disk.img" >"$hist/cairn.out"
		pt=$(sed -n 's/^  "point": *"\([^"]*\)".*/\1/p' "$hist/cairn.out")
		RESTIC_CACHE_DIR=$hist/restic/cache restic -q -r "$hist/restic/repo" backup --json "$hist/disk.img" >"$hist/restic.out"
		snap=$(grep -o '"snapshot_id": *"[0-9a-f]*"' "$hist/restic.out" | tail -1 | sed 's/.*"\([0-9a-f]*\)"$/\1/')
		if [ -z "$pt" ] || [ -z "$snap" ]; then die "step $k: no cairn point or restic snapshot id"; fi
		BORG_BASE_DIR=$hist/borg/base borg create "$hist/borg/repo::$(printf 'p%02d' "$k")" "$hist/disk.img"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$s" "$sum" "$pt" "$snap" "$(printf 'p%02d' "$k")" \
			"$(dusize "$hist/cairn/repo")" "$(dusize "$hist/restic/repo")" "$(dusize "$hist/borg/repo")" >>"$hist/points.tsv"
		log "$(awk -F '\t' 'END { printf "history step %d/%s: %s; cairn %d MiB, restic %d MiB, borg %d MiB", $1, n, $4, $7 / 1048576, $8 / 1048576, $9 / 1048576 }' n="$hsteps" "$hist/points.tsv")"
	done
	rm -f "$hist/cairn.out" "$hist/restic.out" "$hist/step.pieces"
	echo "$want" >"$hist/stamp"
}

# history_copy TOOL DEST copies the history repository of TOOL (cairn,
# restic or borg: the repository with its caches) to DEST, which it
# replaces, for a run that changes or deletes it; the repository is then
# DEST/repo (and DEST/cache for restic, DEST/base for borg).
history_copy() {
	[ -d "$hist/$1/repo" ] || die "no history repository for $1: run ensure_history"
	rm -rf "$2"
	mkdir -p "$(dirname "$2")"
	cp -a --reflink=auto "$hist/$1" "$2"
}

# history_points prints the number of points in the history.
history_points() { awk 'NR > 1' "$hist/points.tsv" | wc -l; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	bench_setup
	make_disks
	ensure_history
fi
