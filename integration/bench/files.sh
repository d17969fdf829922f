#!/usr/bin/env bash
# Many small files out of a point (make bench, or alone): one tree, a copy
# of /usr/share/doc and /usr/share/man, is put into an ext4, an XFS and an
# NTFS disk image, each backed up once into its own vault; each round, for
# each filesystem in turn, copies the whole tree out of a fresh cairn mount
# (cp -a MNT/files/latest/files/. DEST: cold, page cache dropped and the
# vault read once) and then again out of the same mount into a second
# directory (warm: the mount's and the kernel's caches filled by the
# first copy). In the same
# round the tree is copied from the source directory on the host
# filesystem: the stand-in for the kernel reading the disk loop-mounted,
# which this machine cannot do, after dropping the page cache (cold, as a
# freshly mounted disk would be) and with the tree just read (warm, a
# lower bound). In the last round diff -r checks each cold copy against
# the source tree.
#
# The images are made without a mount of the kernel and without loop
# devices: ext4 with mkfs.ext4 -d; XFS with mkfs.xfs -p and a protofile
# (benchtool xfsproto); NTFS with mkntfs on a file, then cp -a into a FUSE
# mount of the image file by ntfs-3g. A protofile cannot hold names with
# whitespace, starting with ':' or "$", so those are left out of the tree
# for every filesystem (listed in files/left-out).
#
#   BENCH_FILES_ROUNDS=3               rounds
#   BENCH_FILES_FS="ext4 xfs ntfs"     the filesystems (ext4 first: the others' ratios are to it)
#   BENCH_FILES_DIRS="/usr/share/doc /usr/share/man"   the tree's sources
#   BENCH_FILES_CPUPROFILE=DIR         write a CPU profile of each cairn mount to DIR/FS.ROUND.pprof
# shellcheck source=integration/bench/lib.sh
. "$(dirname "$0")/lib.sh"

rounds=${BENCH_FILES_ROUNDS:-3}
read -r -a fstypes <<<"${BENCH_FILES_FS:-ext4 xfs ntfs}"
read -r -a srcdirs <<<"${BENCH_FILES_DIRS:-/usr/share/doc /usr/share/man}"
profdir=${BENCH_FILES_CPUPROFILE:-}
files_recipe=2

bench_setup
for t in mkfs.xfs mkntfs ntfs-3g; do
	command -v "$t" >/dev/null || die "$t missing: run integration/install-deps.sh"
done
fdir=$work/files
tree=$fdir/tree
mnt=$fdir/mnt
dest=$fdir/dest

# mkntfs_tree IMAGE fills an empty NTFS image with the tree through a FUSE
# mount of the image file by ntfs-3g, and waits until ntfs-3g has written
# everything back.
mkntfs_tree() {
	local img=$1 m=$fdir/ntfs-mnt pid i
	mkdir -p "$m"
	ntfs-3g -o no_detach "$img" "$m" >"$fdir/ntfs-3g.log" 2>&1 &
	pid=$!
	for i in $(seq 200); do
		mountpoint -q "$m" && break
		kill -0 "$pid" 2>/dev/null || die "ntfs-3g exited: $(cat "$fdir/ntfs-3g.log")"
		[ "$i" -lt 200 ] || die "ntfs-3g: $img not mounted after 10 s"
		sleep 0.05
	done
	cp -a "$tree/." "$m/" || {
		umount "$m"
		die "cp -a into the ntfs-3g mount failed"
	}
	umount "$m"
	wait "$pid" || die "ntfs-3g: $(cat "$fdir/ntfs-3g.log")"
	rmdir "$m"
}

# mkimage FS IMAGE makes a 1 GiB image of the tree.
mkimage() {
	local fs=$1 img=$2
	case $fs in
	ext4)
		E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -U 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f1 -d "$tree" "$img" 1G
		;;
	xfs)
		"$benchtool" xfsproto "$tree" >"$fdir/xfs.proto"
		mkfs.xfs -q -f -m uuid=0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f2 -p "$fdir/xfs.proto" -d "file,name=$img,size=1g"
		;;
	ntfs)
		rm -f "$img"
		truncate -s 1G "$img"
		mkntfs -q -F -f -L cairn-bench "$img" >/dev/null 2>"$fdir/mkntfs.err" || die "mkntfs: $(cat "$fdir/mkntfs.err")"
		mkntfs_tree "$img"
		;;
	*) die "unknown filesystem $fs (ext4, xfs or ntfs)" ;;
	esac
	# Zeros the tools wrote become holes.
	fallocate -d "$img"
}

[ "${fstypes[0]}" = ext4 ] || die "BENCH_FILES_FS must start with ext4: the other rows' ratios are to it"
want="recipe=$files_recipe fs=${fstypes[*]} dirs=${srcdirs[*]} list=$(find "${srcdirs[@]}" -printf '%s %p\n' | sort | sha256sum | cut -c1-16) cairn=$(sha256sum <"$cairn" | cut -c1-16)"
if [ "$(cat "$fdir/stamp" 2>/dev/null)" = "$want" ]; then
	log "reusing the images of the tree and their vaults in $fdir"
else
	log "copying ${srcdirs[*]}, making ${fstypes[*]} images of it, cairn backup of each (untimed)"
	rm -rf "$fdir"
	mkdir -p "$tree"
	for s in "${srcdirs[@]}"; do
		mkdir -p "$tree$(dirname "$s")"
		cp -a "$s" "$tree$(dirname "$s")/"
	done
	# What a protofile cannot name, left out of every image alike.
	find "$tree" -depth \( -name '*[[:space:]]*' -o -name ':*' -o -name '$' -o -lname '*[[:space:]]*' \) -print >"$fdir/left-out"
	while IFS= read -r p; do rm -rf "$p"; done <"$fdir/left-out"
	[ ! -s "$fdir/left-out" ] || log "left out of the tree (a protofile cannot name them): $(wc -l <"$fdir/left-out") entries, listed in $fdir/left-out"
	for fs in "${fstypes[@]}"; do
		log "$fs: image and backup"
		mkdir -p "$fdir/$fs"
		# The disk is named after the file: MNT/files/latest/files/.
		mkimage "$fs" "$fdir/$fs/files.img"
		"$cairn" --vault "$fdir/$fs/vault" init >/dev/null
		"$cairn" --vault "$fdir/$fs/vault" backup --name files "$fdir/$fs/files.img" >/dev/null
	done
	echo "$want" >"$fdir/stamp"
fi
nfiles=$(find "$tree" -type f | wc -l)
nall=$(find "$tree" | wc -l)
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
nleft=$(wc -l <"$fdir/left-out")
# The mount is ready once the tree's first directory shows.
top=$(echo "${srcdirs[0]}" | cut -d/ -f2)
mkdir -p "$mnt"
[ -z "$profdir" ] || mkdir -p "$profdir"
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

# Entries of each filesystem's own, left out of the check: ext4's
# lost+found (made by mkfs).
declare -A check
for r in $(seq 1 "$rounds"); do
	for fs in "${fstypes[@]}"; do
		vault=$fdir/$fs/vault
		# A fresh mount, page cache dropped, the vault read once.
		drop_caches "$vault"
		if [ -n "$profdir" ]; then
			CAIRN_CPUPROFILE=$profdir/$fs.$r.pprof "$cairn" --vault "$vault" mount "$mnt" 2>"$fdir/mount.log" &
		else
			"$cairn" --vault "$vault" mount "$mnt" 2>"$fdir/mount.log" &
		fi
		mpid=$!
		until [ -d "$mnt/files/latest/files/$top" ]; do
			kill -0 "$mpid" 2>/dev/null || die "cairn mount ($fs) exited: $(cat "$fdir/mount.log")"
			sleep 0.01
		done
		rm -rf "$dest" "$dest.warm"
		seconds cp -a "$mnt/files/latest/files/." "$dest"
		printf 'cairn mount, %s\t%s\t%s\n' "$fs" "$r" "$secs" >>"$tsv"
		log "round $r cairn mount, $fs: cp -a ${secs} s"
		if [ "$r" = "$rounds" ]; then
			if diff -r --no-dereference -x lost+found "$tree" "$dest" >"$fdir/diff.$fs" 2>&1; then
				check[$fs]=pass
			else
				check[$fs]=FAIL
				head "$fdir/diff.$fs" >&2
			fi
		fi
		# The same mount again: its caches and the kernel's filled. Into
		# a new directory, the first copy kept: creating files on the
		# host right after removing a tree as large takes several times
		# as long here. The first copy is written out first, as the page
		# cache drop before it wrote out everything.
		sync
		quiet
		seconds cp -a "$mnt/files/latest/files/." "$dest.warm"
		printf 'cairn mount, %s, warm\t%s\t%s\n' "$fs" "$r" "$secs" >>"$tsv"
		log "round $r cairn mount, $fs, warm: cp -a ${secs} s"
		"$cairn" umount "$mnt" >/dev/null 2>&1 || kill -TERM "$mpid"
		wait "$mpid" || true
		mpid=
		rm -rf "$dest" "$dest.warm"
	done

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

checks=
for fs in "${fstypes[@]}"; do checks="$checks${checks:+, }$fs ${check[$fs]:-not run}"; done
{
	echo
	echo "## Many small files: cairn $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?') mount (${fstypes[*]}) vs the host filesystem"
	echo
	echo "Tree: ${srcdirs[*]}, $nfiles regular files ($nall entries), $((bytes >> 20)) MiB$([ "$nleft" = 0 ] || echo ", $nleft entries left out (names a protofile cannot hold)"); the same tree in each image: ext4 by mkfs.ext4 -d, XFS by mkfs.xfs -p (protofile), NTFS by mkntfs and cp -a through ntfs-3g; $rounds rounds, medians (range). Cold: a fresh mount, page cache dropped and the vault read once; warm: the same mount again."
	echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| source | cp -a s | MiB/s | files/s | / ext4 mount, same state | / host cold |"
	echo "|---|---:|---:|---:|---:|---:|"
	awk -F '\t' -v bytes="$bytes" -v n="$nfiles" -v fss="${fstypes[*]}" '
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
			e = "–"
			if (w ~ /^cairn mount, / && w !~ /^cairn mount, ext4/) {
				base = w; sub(/^cairn mount, [^,]*/, "cairn mount, ext4", base)
				if (base in med) e = sprintf("%.2f×", med[w] / med[base])
			}
			h = (w == "host cold") ? "–" : sprintf("%.2f×", med[w] / med["host cold"])
			printf "| %s | %.2f (%.2f–%.2f) | %.0f | %.0f | %s | %s |\n", w, med[w], lo[w], hi[w], bytes / 1048576 / med[w], n / med[w], e, h
		}
		print ""
		c = "cairn mount, ext4"
		printf "- %s cairn mount (ext4) within 2× of the kernel (host filesystem, cold): %.2f× its time (%.2f× the warm host copy)\n", (med[c] <= 2 * med["host cold"] ? "PASS" : "MISS"), med[c] / med["host cold"], med[c] / med["host warm"]
		nf = split(fss, f, " ")
		for (i = 2; i <= nf; i++) {
			w = "cairn mount, " f[i]
			printf "- %s cairn mount (%s) within 2× of the ext4 mount: %.2f× its time cold, %.2f× warm (%.2f s and %.2f s against %.2f s and %.2f s)\n", (med[w] <= 2 * med[c] ? "PASS" : "MISS"), f[i],
				med[w] / med[c], med[w ", warm"] / med[c ", warm"], med[w], med[w ", warm"], med[c], med[c ", warm"]
		}
	}' "$tsv"
	echo "- correctness (diff -r --no-dereference -x lost+found of each cold copy against the source tree, last round): $checks"
} | tee "$work/files.md"
for fs in "${fstypes[@]}"; do [ "${check[$fs]:-}" = pass ] || exit 1; done
