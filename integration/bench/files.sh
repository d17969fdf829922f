#!/usr/bin/env bash
# Many small files out of a point (make bench, or alone): an ext4 disk made
# with mkfs.ext4 -d from a copy of /usr/share/doc and /usr/share/man is
# backed up once; each round copies its whole tree out of a fresh cairn
# mount (cp -a MNT/files/latest/files/. DEST) and, in the same round, the
# same tree from the source directory on the host filesystem: the stand-in
# for the kernel reading the disk loop-mounted, which this machine cannot
# do. The host copy is timed twice: after dropping the page cache (cold, as
# a freshly mounted disk would be) and with the tree just read (warm, a
# lower bound). Then diff -r checks the copy against the source tree.
#
#   BENCH_FILES_ROUNDS=3   rounds
. "$(dirname "$0")/lib.sh"

rounds=${BENCH_FILES_ROUNDS:-3}
files_recipe=1

bench_setup
fdir=$work/files
tree=$fdir/tree
image=$fdir/files.img
vault=$fdir/vault
mnt=$fdir/mnt
dest=$fdir/dest

want="recipe=$files_recipe list=$(find /usr/share/doc /usr/share/man -printf '%s %p\n' | sort | sha256sum | cut -c1-16) cairn=$(sha256sum <"$cairn" | cut -c1-16)"
if [ "$(cat "$fdir/stamp" 2>/dev/null)" = "$want" ]; then
	log "reusing $image and its vault"
else
	log "copying /usr/share/doc and /usr/share/man, mkfs.ext4 -d, cairn backup (untimed)"
	rm -rf "$fdir"
	mkdir -p "$tree/usr/share"
	cp -a /usr/share/doc /usr/share/man "$tree/usr/share/"
	E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -U 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f1 -d "$tree" "$image" 1G
	fallocate -d "$image"
	"$cairn" --vault "$vault" init >/dev/null
	"$cairn" --vault "$vault" backup --name files "$image" >/dev/null
	echo "$want" >"$fdir/stamp"
fi
nfiles=$(find "$tree" -type f | wc -l)
nall=$(find "$tree" | wc -l)
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
mkdir -p "$mnt"
tsv=$work/files.tsv
printf 'what\tround\tseconds\n' >"$tsv"

mpid=
trap '[ -z "$mpid" ] || { fusermount -u "$mnt" 2>/dev/null || umount -l "$mnt"; kill "$mpid"; } 2>/dev/null' EXIT

seconds() {
	local t0
	t0=$(now)
	"$@"
	secs=$(echo "$(now) - $t0" | bc)
}

check=-
for r in $(seq 1 "$rounds"); do
	# cairn: a fresh mount, page cache dropped, the vault read once.
	drop_caches "$vault"
	"$cairn" --vault "$vault" mount "$mnt" 2>"$fdir/mount.log" &
	mpid=$!
	until [ -d "$mnt/files/latest/files/usr" ]; do
		kill -0 "$mpid" 2>/dev/null || die "cairn mount exited: $(cat "$fdir/mount.log")"
		sleep 0.01
	done
	rm -rf "$dest"
	seconds cp -a "$mnt/files/latest/files/." "$dest"
	printf 'cairn mount\t%s\t%s\n' "$r" "$secs" >>"$tsv"
	log "round $r cairn mount: cp -a ${secs} s"
	if [ "$r" = "$rounds" ]; then
		# lost+found is the disk's own, made by mkfs.
		if diff -r --no-dereference -x lost+found "$tree" "$dest" >"$fdir/diff.out" 2>&1; then check=pass; else check=FAIL; head "$fdir/diff.out" >&2; fi
	fi
	"$cairn" umount "$mnt" >/dev/null 2>&1 || kill -TERM "$mpid"
	wait "$mpid" || true
	mpid=
	rm -rf "$dest"

	# The host filesystem, cold: nothing of the tree in the page cache.
	sync
	quiet
	echo 3 >/proc/sys/vm/drop_caches
	seconds cp -a "$tree/." "$dest"
	printf 'host cold\t%s\t%s\n' "$r" "$secs" >>"$tsv"
	log "round $r host cold: cp -a ${secs} s"
	rm -rf "$dest"

	# The host filesystem, warm: the tree read just before.
	drop_caches "$tree"
	seconds cp -a "$tree/." "$dest"
	printf 'host warm\t%s\t%s\n' "$r" "$secs" >>"$tsv"
	log "round $r host warm: cp -a ${secs} s"
	rm -rf "$dest"
done

{
	echo
	echo "## Many small files: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') mount vs the host filesystem"
	echo
	echo "Tree: /usr/share/doc and /usr/share/man, $nfiles regular files ($nall entries), $((bytes >> 20)) MiB; ext4 disk by mkfs.ext4 -d; $rounds rounds, medians (range)."
	echo
	echo "| source | cp -a s | MiB/s | files/s | cairn time / this |"
	echo "|---|---:|---:|---:|---:|"
	awk -F '\t' -v bytes="$bytes" -v n="$nfiles" '
	NR > 1 { v[$1] = v[$1] " " $3; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
	END {
		for (i = 1; i <= k; i++) {
			w = order[i]; m = split(v[w], a, " ")
			for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
			med[w] = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
			lo[w] = a[1]; hi[w] = a[m]
		}
		for (i = 1; i <= k; i++) {
			w = order[i]
			printf "| %s | %.2f (%.2f–%.2f) | %.0f | %.0f | %s |\n", w, med[w], lo[w], hi[w], bytes / 1048576 / med[w], n / med[w], (w == "cairn mount" ? "–" : sprintf("%.2f×", med["cairn mount"] / med[w]))
		}
		print ""
		printf "- %s cairn mount within 2× of the kernel (host filesystem, cold): %.2f× its time (%.2f× the warm host copy)\n", (med["cairn mount"] <= 2 * med["host cold"] ? "PASS" : "MISS"), med["cairn mount"] / med["host cold"], med["cairn mount"] / med["host warm"]
	}' "$tsv"
	echo "- correctness (diff -r --no-dereference -x lost+found of the copy against the source tree): $check"
} | tee "$work/files.md"
[ "$check" = pass ]
