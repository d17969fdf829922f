#!/usr/bin/env bash
# Garbage collection (make bench, or alone): on the history (history.sh:
# the same points in cairn, restic and borg), every other point is deleted
# (steps 1, 3, 5, ...: the newest is kept) and each tool gives the space
# back, in the same run, alternating, medians and ratios. Per round and
# tool, untimed: copy the history repository, drop the page cache and read
# the copy (and the tool's program) once; then timed one right after the
# other, and reported separately and together:
#
#   cairn   cairn --vault V delete POINT...   then  cairn --vault V gc --json
#   cairn-T the same with gc --threshold T --json (not a target row);
#           cairn-1 rewrites every pack that holds a dead block: the cost
#           of giving back all the dead space, data moved included
#   restic  restic forget ID...               then  restic prune (default options)
#   borg    borg delete REPO ARCHIVE...       then  borg compact REPO
#           (borg delete REPO::ARCHIVE one by one when borg takes only one)
#
# Each at its default policy for dead space left in place: cairn gc
# compacts packs under half live, then the emptiest others until at most
# 5% of the vault is dead (restic's --max-unused); restic prune leaves at
# most 5% unused (--max-unused 5%); borg compact rewrites segments with
# more than 10% unused (--threshold 10). restic forget then prune is the
# work of restic forget --prune; borg delete is used, not borg prune,
# because the deleted archives are named, not chosen by rules.
#
# Bytes freed is du -sb of the repository (not the peers' caches) before
# and after. cairn's vault after gc is also compared with a fresh vault
# holding only the surviving states: each surviving point restored from
# the history vault to a temporary file and backed up into a new vault of
# the same chunk size and compression (untimed, once per history, kept in
# $work/gcfresh while its stamp matches). Checks, untimed: cairn verify
# --data passes and disk@latest restores identical (cmp) to the history's
# disk; restic check passes; borg check passes (first round only: it reads
# every chunk, minutes); each tool lists the surviving points.
#
#   BENCH_GC_ROUNDS=2   rounds
#   BENCH_GC_TOOLS="cairn cairn-1 restic borg"
# and the settings of history.sh (BENCH_HISTORY, ...) and lib.sh.
# shellcheck source=integration/bench/history.sh
. "$(dirname "$0")/history.sh"

rounds=${BENCH_GC_ROUNDS:-2}
read -r -a tools <<<"${BENCH_GC_TOOLS:-cairn cairn-1 restic borg}"

bench_setup
make_disks
ensure_history

npoints=$(history_points)
[ "$npoints" -ge 2 ] || die "the history has $npoints points; gc needs at least 2"

# The deleted steps: 1, 3, 5, ...; the newest point is always kept.
# sel COLUMN DELETED prints that column of points.tsv for the deleted
# steps (1) or the kept ones (0), in order.
sel() {
	awk -F '\t' -v n="$npoints" -v c="$1" -v want="$2" 'NR > 1 && (($1 % 2 == 1 && $1 != n) == want) { print $c }' "$hist/points.tsv"
}
mapfile -t del_steps < <(sel 1 1)
mapfile -t del_cairn < <(sel 4 1)
mapfile -t del_restic < <(sel 5 1)
mapfile -t del_borg < <(sel 6 1)
mapfile -t keep_cairn < <(sel 4 0)
ndel=${#del_steps[@]}
nkeep=$((npoints - ndel))
log "gc: deleting $ndel of $npoints points (steps ${del_steps[*]}), keeping $nkeep"

# The fresh vault: only the surviving states, backed up in order into a
# new vault made like the history's.
fresh=$work/gcfresh
ensure_fresh() {
	local hv=$hist/cairn/repo cs comp want p i=0 sum
	"$cairn" --vault "$hv" stats --json >"$work/gc.stats"
	cs=$(json_field "$work/gc.stats" chunk_size)
	comp=$(sed -n 's/.*"compression": *"\([^"]*\)".*/\1/p' "$work/gc.stats" | head -1)
	rm -f "$work/gc.stats"
	if [ -z "$cs" ] || [ -z "$comp" ]; then die "cannot read the chunk size and compression of the history vault"; fi
	want="fresh=1 chunk=$cs compression=$comp keep=${keep_cairn[*]} $(cat "$hist/stamp")"
	if [ -d "$fresh/repo" ] && [ "$(cat "$fresh/stamp" 2>/dev/null)" = "$want" ]; then
		log "reusing the fresh vault of the $nkeep surviving points in $fresh"
		return
	fi
	log "making a fresh vault of the $nkeep surviving points (chunk size $cs, $comp; untimed)"
	rm -rf "$fresh"
	mkdir -p "$fresh/tmp"
	"$cairn" --vault "$fresh/repo" init --chunk-size "$cs" --compression "$comp" >/dev/null
	for p in "${keep_cairn[@]}"; do
		i=$((i + 1))
		# The same file name as the history's, so the points name the same disk.
		"$cairn" --vault "$hv" restore "$p" "$fresh/tmp/disk.img" >/dev/null
		sum=$(history_sum <"$fresh/tmp/disk.img")
		[ "$sum" = "$(awk -F '\t' -v p="$p" '$4 == p { print $3 }' "$hist/points.tsv")" ] ||
			die "$p restored from the history vault does not match its SHA-256 in points.tsv"
		"$cairn" --vault "$fresh/repo" backup --name disk "$fresh/tmp/disk.img" >/dev/null
		rm -f "$fresh/tmp/disk.img"
		log "fresh vault: $i/$nkeep ($p) $(($(dusize "$fresh/repo") >> 20)) MiB"
	done
	rmdir "$fresh/tmp"
	echo "$want" >"$fresh/stamp"
}
ensure_fresh
fresh_bytes=$(dusize "$fresh/repo")

gdir=$work/gc
rm -rf "$gdir"
mkdir -p "$gdir"
# add A B prints A + B with two decimals.
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; }
# mib BYTES prints BYTES in MiB with one decimal.
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
tsv=$work/gc.tsv
printf 'tool\tround\tstep\twall\tcpu\trss_kb\tbefore_bytes\tafter_bytes\tother_cpu\n' >"$tsv"

# borg 1.2 deletes several archives in one command (REPO ARCHIVE...).
if borg delete --help | grep -q 'ARCHIVE \.\.\.'; then borg_multi=1; else borg_multi=0; fi
# borg is a Python program: warm its package too.
borg_pkg=$(python3 -c 'import borg, os; print(os.path.dirname(borg.__file__))' 2>/dev/null || true)

# step OUT STEP BEFORE -- CMD... times CMD and appends a row; sets after.
step() {
	local out=$1 name=$2 before=$3
	shift 3
	timed "$out" "$@"
	after=$(dusize "$d/repo")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$name" "$wall" "$cpu" "$rss_kb" "$before" "$after" "$other_cpu" >>"$tsv"
	log "$(printf '%-6s round %d %-8s wall %6.2f s  cpu %6.2f s  rss %4d MiB  repo %6.1f MiB  (others: %.1f cpu s)' \
		"$t" "$r" "$name" "$wall" "$cpu" $((rss_kb / 1024)) "$(mib "$after")" "$other_cpu")"
	tw=$(add "$tw" "$wall")
	tc=$(add "$tc" "$cpu")
	to=$(add "$to" "$other_cpu")
	[ "$rss_kb" -le "$trss" ] || trss=$rss_kb
}

check=pass
fail() {
	log "$t round $r: $*"
	check=FAIL
}
for r in $(seq 1 "$rounds"); do
	for t in "${tools[@]}"; do
		d=$gdir/$t
		# cairn-T works on a copy of cairn's history.
		history_copy "${t%%-*}" "$d"
		case $t in
		cairn | cairn-*)
			del=("$cairn" --vault "$d/repo" delete "${del_cairn[@]}")
			rec=("$cairn" --vault "$d/repo" gc --json)
			[ "$t" = cairn ] || rec+=(--threshold "${t#cairn-}")
			names=(delete gc)
			warmed=("$d" "$cairn")
			;;
		restic)
			del=(env RESTIC_CACHE_DIR="$d/cache" restic -r "$d/repo" forget "${del_restic[@]}")
			rec=(env RESTIC_CACHE_DIR="$d/cache" restic -r "$d/repo" prune)
			names=(forget prune)
			warmed=("$d" "$(command -v restic)")
			;;
		borg)
			if [ "$borg_multi" = 1 ]; then
				del=(env BORG_BASE_DIR="$d/base" borg delete "$d/repo" "${del_borg[@]}")
			else
				# shellcheck disable=SC2016 # expanded by the inner shell
				del=(env BORG_BASE_DIR="$d/base" bash -c 'r=$1; shift; for a; do borg delete "$r::$a" || exit; done' - "$d/repo" "${del_borg[@]}")
			fi
			rec=(env BORG_BASE_DIR="$d/base" borg compact "$d/repo")
			names=(delete compact)
			warmed=("$d" "$(command -v borg)" "$(readlink -f "$(command -v python3)")" ${borg_pkg:+"$borg_pkg"})
			;;
		*) die "unknown tool $t (cairn, cairn-THRESHOLD, restic, borg)" ;;
		esac
		before=$(dusize "$d/repo")
		# The binaries too: dropping the page cache evicts them.
		drop_caches "${warmed[@]}"
		tw=0 tc=0 to=0 trss=0
		step "$gdir/$t.$r.${names[0]}" "${names[0]}" "$before" -- "${del[@]}"
		step "$gdir/$t.$r.${names[1]}" "${names[1]}" "$after" -- "${rec[@]}"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" total "$tw" "$tc" "$trss" "$before" "$after" "$to" >>"$tsv"
		log "$(printf '%-6s round %d total    wall %6.2f s  cpu %6.2f s  freed %6.1f MiB' "$t" "$r" "$tw" "$tc" "$(mib $((before - after)))")"

		# Checks, untimed.
		case $t in
		cairn | cairn-*)
			cp "$gdir/$t.$r.gc.out" "$gdir/$t.gc.$r.json"
			n=$("$cairn" --vault "$d/repo" points disk --json | grep -c '"point":' || true)
			[ "$n" = "$nkeep" ] || fail "$n points after gc, not $nkeep"
			if "$cairn" --vault "$d/repo" verify --data >"$gdir/verify.out" 2>&1; then
				log "cairn round $r: verify --data ok"
			else
				cat "$gdir/verify.out" >&2
				fail "verify --data FAILED"
			fi
			if "$cairn" --vault "$d/repo" restore disk@latest "$gdir/latest.raw" >/dev/null &&
				cmp -s "$gdir/latest.raw" "$hist/disk.img"; then
				log "cairn round $r: disk@latest restored, identical to the history's disk"
			else
				fail "disk@latest does not restore, or DIFFERS from the history's disk"
			fi
			rm -f "$gdir/latest.raw"
			;;
		restic)
			n=$(RESTIC_CACHE_DIR=$d/cache restic -q -r "$d/repo" snapshots --json | grep -o '"short_id"' | wc -l)
			[ "$n" = "$nkeep" ] || fail "$n snapshots after prune, not $nkeep"
			if RESTIC_CACHE_DIR=$d/cache restic -r "$d/repo" check >"$gdir/check.out" 2>&1; then
				log "restic round $r: check ok"
			else
				cat "$gdir/check.out" >&2
				fail "restic check FAILED"
			fi
			;;
		borg)
			n=$(BORG_BASE_DIR=$d/base borg list --short "$d/repo" | wc -l)
			[ "$n" = "$nkeep" ] || fail "$n archives after compact, not $nkeep"
			if [ "$r" = 1 ]; then
				if BORG_BASE_DIR=$d/base borg check "$d/repo" >"$gdir/check.out" 2>&1; then
					log "borg round $r: check ok"
				else
					cat "$gdir/check.out" >&2
					fail "borg check FAILED"
				fi
			fi
			;;
		esac
		rm -rf "$d"
	done
done

{
	echo
	echo "## Garbage collection: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') vs restic $(restic version | awk '{ print $2 }') and borg $(borg --version | awk '{ print $2 }')"
	echo
	echo "History: $npoints points of disk.img ($(($(du -B1 "$work/disk.img" | cut -f1) >> 20)) MiB allocated), each after $(history_blocks) scattered 1 MiB overwrites; $ndel deleted (steps ${del_steps[0]}, ${del_steps[1]:-}, ..., ${del_steps[$((ndel - 1))]}), $nkeep kept, the newest among them; then the space given back: cairn delete + gc --json$(for t in "${tools[@]}"; do case $t in cairn-*) printf ' (and, not a target row, gc --threshold %s)' "${t#cairn-}" ;; esac; done), restic forget + prune, borg delete + compact$([ "$borg_multi" = 1 ] || echo ' (delete one archive per command)'), each at its default policy for dead space (cairn and restic leave at most 5% of the repository unused, borg compacts segments more than 10% unused). $rounds rounds, medians; page cache dropped and the copy of the repository (with the peers' caches) and the tool's program read once before each tool's first step; the second step runs right after the first."
	echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	awk -F '\t' -v fresh="$fresh_bytes" -v nkeep="$nkeep" '
	function med(k, f,   n, a, i, j, x) {
		n = split(col[k, f], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { x = a[i]; a[i] = a[j]; a[j] = x }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR > 1 {
		k = $1 SUBSEP $3
		if (!(k in seen)) { seen[k] = 1; order[++nk] = k; tool[k] = $1; stp[k] = $3 }
		if (!($1 in tools)) { tools[$1] = 1; torder[++nt] = $1 }
		runs[k]++
		col[k, "wall"] = col[k, "wall"] " " $4; col[k, "cpu"] = col[k, "cpu"] " " $5; col[k, "rss"] = col[k, "rss"] " " $6
		col[k, "freed"] = col[k, "freed"] " " ($7 - $8); col[k, "after"] = col[k, "after"] " " $8; col[k, "before"] = col[k, "before"] " " $7
		col[k, "other"] = col[k, "other"] " " $9
		col[k, "walls"] = col[k, "walls"] (runs[k] > 1 ? ", " : "") sprintf("%.2f", $4)
	}
	END {
		for (i = 1; i <= nk; i++) { k = order[i]; w[k] = med(k, "wall"); c[k] = med(k, "cpu") }
		# The faster peer, by median total wall time.
		best = ""
		for (i = 1; i <= nt; i++) { t = torder[i]; if (t !~ /^cairn/ && (best == "" || w[t, "total"] < w[best, "total"])) best = t }
		print "| tool | step | runs | wall s (runs) | CPU s | peak RSS MiB | freed MiB | repository MiB after | others\x27 CPU s | wall peer / cairn | CPU peer / cairn |"
		print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= nk; i++) {
			k = order[i]; t = tool[k]; s = stp[k]
			r = "– | –"
			if (s == "total" && t !~ /^cairn/ && (("cairn", "total") in seen))
				r = sprintf("%.2f× | %.2f×", w[k] / w["cairn", "total"], c[k] / c["cairn", "total"])
			printf "| %s | %s | %d | %.2f (%s) | %.2f | %.0f | %.1f | %.1f | %.1f | %s |\n", t, (s == "total" ? "**total**" : s), runs[k], w[k], col[k, "walls"], c[k],
				med(k, "rss") / 1024, med(k, "freed") / 1048576, med(k, "after") / 1048576, med(k, "other"), r
		}
		print ""
		printf "Freed MiB is `du -sb` of the repository (not the peers\x27 caches) before minus after the step; a total row sums wall and CPU and takes the larger peak RSS. Ratios: the peer\x27s total over cairn\x27s.\n\n"
		if ((("cairn", "total") in seen) && best != "") {
			x = w[best, "total"] / w["cairn", "total"]
			printf "- %s cairn gc ≥ 5× faster than the faster peer (%s): %.2f× (CPU %.2f×); delete + gc %.2f s against %.2f s\n", (x >= 5 ? "PASS" : "MISS"), best, x,
				c[best, "total"] / c["cairn", "total"], w["cairn", "total"], w[best, "total"]
		}
		if (("cairn", "total") in seen) {
			a = med("cairn" SUBSEP "total", "after")
			x = a / fresh
			printf "- %s cairn vault after gc within 1.05× of a fresh vault of the %d surviving states: %.3f× (%.1f MiB against %.1f MiB)\n", (x <= 1.05 ? "PASS" : "MISS"), nkeep, x, a / 1048576, fresh / 1048576
		}
		for (i = 1; i <= nt; i++) {
			t = torder[i]; k = t SUBSEP "total"
			if (t !~ /^cairn-/) continue
			printf "- cairn gc --threshold %s (not a target row): delete + gc %.2f s (CPU %.2f s), %.1f MiB freed, vault %.3f× the fresh one", substr(t, 7), w[k], c[k], med(k, "freed") / 1048576, med(k, "after") / fresh
			if (best != "") printf "; the faster peer (%s) takes %.2f× its time", best, w[best, "total"] / w[k]
			print ""
		}
		for (i = 1; i <= nt; i++) { t = torder[i]; k = t SUBSEP "total"
			printf "- %s: %.1f MiB before, %.1f MiB freed (%.1f%%), peak RSS %.0f MiB\n", t, med(k, "before") / 1048576, med(k, "freed") / 1048576,
				100 * med(k, "freed") / med(k, "before"), med(k, "rss") / 1024 }
	}' "$tsv"
	for t in "${tools[@]}"; do
		gcj=$gdir/$t.gc.$rounds.json
		[ -f "$gcj" ] || continue
		echo "- $t gc (last round, its JSON): $(json_field "$gcj" blocks_freed) of $(json_field "$gcj" blocks) blocks freed, $(json_field "$gcj" packs_deleted) packs deleted, $(json_field "$gcj" packs_compacted) compacted into $(json_field "$gcj" packs_written) ($(mib "$(json_field "$gcj" bytes_moved)") MiB moved); packs $(mib "$(json_field "$gcj" bytes_before)") → $(mib "$(json_field "$gcj" bytes_after)") MiB; $(json_field "$gcj" duration_seconds) s by its own clock"
	done
	echo "- fresh vault: the $nkeep surviving points restored from the history vault (each checked against its SHA-256 in points.tsv) and backed up in order into a new vault of the same chunk size and compression: $(mib "$fresh_bytes") MiB"
	awk -F '\t' 'END { printf "- history repositories: cairn %.1f MiB, restic %.1f MiB, borg (lz4) %.1f MiB\n", $7 / 1048576, $8 / 1048576, $9 / 1048576 }' "$hist/points.tsv"
	echo "- checks (each tool lists the $nkeep surviving points; cairn verify --data passes and disk@latest restores identical to the history's disk, every round; restic check every round; borg check in round 1): $check"
} | tee "$work/gc.md"
[ "$check" = pass ]
