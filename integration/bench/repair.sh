#!/usr/bin/env bash
# Index rebuild (make bench, or alone): the history's cairn vault and
# restic repository (history.sh: the same points in each) lose their index,
# then each tool rebuilds it from storage, in the same run, alternating,
# medians and the ratio restic / cairn. Per round and tool, untimed: copy
# the history repository, delete its index (cairn: VAULT/index; restic:
# REPO/index/*, its cache kept), drop the page cache and read the copy
# once; then timed: cairn repair --json, restic repair index (rebuild-index
# before restic 0.16). Checks: cairn exits 0 and reports every point, and
# restores the latest point exactly (cmp with the history's disk); restic
# snapshots lists every point.
#
#   BENCH_REPAIR_ROUNDS=3   rounds
# and the settings of history.sh (BENCH_HISTORY, ...) and lib.sh.
# shellcheck source=integration/bench/history.sh
. "$(dirname "$0")/history.sh"

rounds=${BENCH_REPAIR_ROUNDS:-3}

bench_setup
make_disks
ensure_history

npoints=$(history_points)
rdir=$work/repair
rm -rf "$rdir"
mkdir -p "$rdir"
tsv=$work/repair.tsv
printf 'tool\tround\twall\tcpu\trss_kb\trepo_bytes\tindex_bytes\tpoints\tpacks\tother_cpu\n' >"$tsv"

# restic 0.16 renamed rebuild-index to repair index.
restic_version=$(restic version | awk '{ print $2 }')
if printf '0.16.0\n%s\n' "$restic_version" | sort -C -V; then
	restic_repair=(repair index)
else
	restic_repair=(rebuild-index)
fi
log "restic $restic_version: restic ${restic_repair[*]}"

check=pass
for r in $(seq 1 "$rounds"); do
	for t in cairn restic; do
		d=$rdir/$t
		history_copy "$t" "$d"
		case $t in
		cairn)
			rm -rf "$d/repo/index"
			cmd=("$cairn" --vault "$d/repo" repair --json)
			;;
		restic)
			rm -f "$d/repo/index/"*
			cmd=(env RESTIC_CACHE_DIR="$d/cache" restic -r "$d/repo" "${restic_repair[@]}")
			;;
		esac
		# The binaries too: dropping the page cache evicts them.
		drop_caches "$d" "$cairn" "$(command -v restic)"
		timed "$rdir/$t.$r" -- "${cmd[@]}"
		case $t in
		cairn)
			pts=$(json_field "$rdir/$t.$r.out" points)
			packs=$(json_field "$rdir/$t.$r.out" packs)
			;;
		restic)
			pts=$(RESTIC_CACHE_DIR=$d/cache restic -q -r "$d/repo" snapshots --json | grep -o '"short_id"' | wc -l)
			packs=$(grep -o '[0-9]* / [0-9]* packs' "$rdir/$t.$r.out" | tail -1 | cut -d' ' -f3)
			;;
		esac
		if [ "$pts" != "$npoints" ]; then
			log "$t round $r: $pts points after the rebuild, not $npoints"
			check=FAIL
		fi
		repo=$(dusize "$d/repo")
		ix=$(dusize "$d/repo/index")
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$wall" "$cpu" "$rss_kb" "$repo" "$ix" "$pts" "${packs:--}" "$other_cpu" >>"$tsv"
		log "$(printf '%-6s round %d wall %6.2f s  cpu %6.2f s  rss %4d MiB  index %5.1f MiB  points %s  (others: %.1f cpu s)' \
			"$t" "$r" "$wall" "$cpu" $((rss_kb / 1024)) "$(echo "$ix / 1048576" | bc -l)" "$pts" "$other_cpu")"
		if [ "$t" = cairn ]; then
			# The rebuilt index serves the latest point exactly.
			if "$cairn" --vault "$d/repo" restore disk@latest "$rdir/latest.raw" >/dev/null &&
				cmp -s "$rdir/latest.raw" "$hist/disk.img"; then
				log "cairn round $r: disk@latest restored, identical to the history's disk"
			else
				log "cairn round $r: disk@latest does not restore, or DIFFERS from the history's disk"
				check=FAIL
			fi
			rm -f "$rdir/latest.raw"
		fi
		rm -rf "$d"
	done
done

nb=$(history_blocks)
{
	echo
	echo "## Index rebuild: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') vs restic $restic_version"
	echo
	echo "History: $npoints points of disk.img ($(($(du -B1 "$work/disk.img" | cut -f1) >> 20)) MiB allocated), each after $nb scattered 1 MiB overwrites; index deleted, then cairn repair --json and restic ${restic_repair[*]}; $rounds rounds, medians; page cache dropped and the repository (with restic's cache) read once before each timed step."
	echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	awk -F '\t' -v cmd_restic="restic ${restic_repair[*]}" '
	function med(t, f,   n, a, i, j, x) {
		n = split(col[t, f], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { x = a[i]; a[i] = a[j]; a[j] = x }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR > 1 {
		if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
		runs[$1]++
		col[$1, "wall"] = col[$1, "wall"] " " $3; col[$1, "cpu"] = col[$1, "cpu"] " " $4; col[$1, "rss"] = col[$1, "rss"] " " $5
		col[$1, "repo"] = col[$1, "repo"] " " $6; col[$1, "ix"] = col[$1, "ix"] " " $7; col[$1, "other"] = col[$1, "other"] " " $10; packs[$1] = $9
		col[$1, "walls"] = col[$1, "walls"] (runs[$1] > 1 ? ", " : "") $3
	}
	END {
		name["cairn"] = "cairn repair --json"; name["restic"] = cmd_restic
		print "| tool | runs | wall s (runs) | CPU s | peak RSS MiB | repository MiB | packs | rebuilt index MiB | others\x27 CPU s | wall restic / cairn | CPU restic / cairn |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= k; i++) { t = order[i]; w[t] = med(t, "wall"); c[t] = med(t, "cpu"); m[t] = med(t, "rss") / 1024 }
		for (i = 1; i <= k; i++) {
			t = order[i]
			r = (t == "cairn" && ("restic" in seen)) ? sprintf("%.2f× | %.2f×", w["restic"] / w[t], c["restic"] / c[t]) : "– | –"
			printf "| %s | %d | %.2f (%s) | %.2f | %.0f | %.1f | %s | %.1f | %.1f | %s |\n", name[t], runs[t], w[t], col[t, "walls"], c[t], m[t],
				med(t, "repo") / 1048576, packs[t], med(t, "ix") / 1048576, med(t, "other"), r
		}
		print ""
		if (("cairn" in seen) && ("restic" in seen)) {
			printf "- %s cairn repair ≥ 3× faster than restic: %.2f× (CPU %.2f×)\n", (w["restic"] >= 3 * w["cairn"] ? "PASS" : "MISS"), w["restic"] / w["cairn"], c["restic"] / c["cairn"]
			printf "- peak RSS: cairn %.0f MiB, restic %.0f MiB\n", m["cairn"], m["restic"]
		}
	}' "$tsv"
	echo "- cairn repair also checks every point as verify does (block locations and packs, no block data read); restic ${restic_repair[*]} rebuilds the index only"
	awk -F '\t' 'END { printf "- history repositories: cairn %.1f MiB, restic %.1f MiB, borg (lz4) %.1f MiB\n", $7 / 1048576, $8 / 1048576, $9 / 1048576 }' "$hist/points.tsv"
	echo "- checks (cairn repair exits 0 and reports all $npoints points, then restores disk@latest identical to the history's disk; restic snapshots lists all $npoints): $check"
} | tee "$work/repair.md"
[ "$check" = pass ]
