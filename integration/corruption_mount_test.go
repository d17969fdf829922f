package integration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// checkMount mounts the vault and reads the disks listed through FUSE,
// each whole, and every guest file of those that hold the ext4
// filesystem: damaged blocks give EIO, everything else its original
// bytes. Bytes read wrong are counted in st.
func (f *mxFixture) checkMount(t *testing.T, vault string, want mxDamage, disks []mxPointDisk, st *mxStats) {
	t.Helper()
	m := startMount(t, vault)
	blocks, files := 0, 0
	seen := map[mxPointDisk]bool{}
	for _, x := range disks {
		if seen[x] {
			continue
		}
		seen[x] = true
		p := f.point(x.point)
		d := p.disk(x.disk)
		ranges := want[p.name][d.name]
		blocks += f.readDisk(t, m, filepath.Join(m.dir, p.resource, p.id, d.name+".raw"), p, d, ranges, st)
		if g := f.guest[p.name]; g != nil {
			files += f.checkGuest(t, m.dir, p, g, ranges, st)
		}
	}
	m.stop(t)
	st.mu.Lock()
	st.mounts++
	st.blocksRead += blocks
	st.guestRead += files
	st.mu.Unlock()
}

// readDisk reads one disk file of the mount: runs of whole blocks in
// reads of up to 1 MiB, damaged blocks one by one (the first and last of
// each damaged range and a few between: each costs the mount a note in
// the index). It returns the number of blocks read.
func (f *mxFixture) readDisk(t *testing.T, m *mounted, path string, p *mxPoint, d *mxDisk, ranges [][2]int64, st *mxStats) int {
	t.Helper()
	orig, err := os.ReadFile(d.image)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		var names []string
		ents, lerr := os.ReadDir(filepath.Join(m.dir, p.resource))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s disk %s in the mount: %v; %s holds %v (%v); the mount's log:\n%s", p.name, d.name, err, p.resource, names, lerr, m.log)
		return 0
	}
	defer fh.Close()
	// No read-ahead by the kernel: each read asks for its blocks.
	unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_RANDOM)
	blocks := 0
	buf := make([]byte, 1<<20)
	for off := int64(0); off < d.size; {
		if inRanges(ranges, off) {
			r := rangeAt(ranges, off)
			nb := (r[1] - r[0] + mxBlock - 1) / mxBlock
			tried := map[int64]bool{}
			for k := int64(0); k <= 8; k++ {
				at := r[0] + min(k*nb/8, nb-1)*mxBlock
				if tried[at] {
					continue
				}
				tried[at] = true
				n, err := fh.ReadAt(buf[:min(mxBlock, d.size-at)], at)
				blocks++
				switch {
				case err == nil:
					t.Errorf("%s disk %s: damaged block at %d reads without error", p.name, d.name, at)
					st.wrongBytes(countDiff(buf[:n], orig[at:at+int64(n)]))
				case !errors.Is(err, syscall.EIO):
					t.Errorf("%s disk %s: damaged block at %d: %v, want EIO", p.name, d.name, at, err)
				}
			}
			off = r[1]
			continue
		}
		end := off + mxBlock
		for end < d.size && !inRanges(ranges, end) && end-off < int64(len(buf)) {
			end += mxBlock
		}
		end = min(end, d.size)
		n, err := fh.ReadAt(buf[:end-off], off)
		blocks += int((end - off + mxBlock - 1) / mxBlock)
		if err != nil && !(errors.Is(err, io.EOF) && int64(n) == end-off) {
			t.Errorf("%s disk %s: [%d, %d) reads %d bytes: %v", p.name, d.name, off, end, n, err)
		}
		if w := countDiff(buf[:n], orig[off:off+int64(n)]); w > 0 {
			t.Errorf("%s disk %s: %d wrong bytes in [%d, %d)", p.name, d.name, w, off, end)
			st.wrongBytes(w)
		}
		off = end
	}
	return blocks
}

// checkGuest reads every file of an ext4 disk through the mount: a file
// with a damaged data block fails, and none reads a wrong byte; on an
// undamaged disk every file reads whole.
func (f *mxFixture) checkGuest(t *testing.T, mnt string, p *mxPoint, files map[string]*mxGuestFile, ranges [][2]int64,
	st *mxStats) int {
	t.Helper()
	n := 0
	for _, path := range mxSortedKeys(files) {
		g := files[path]
		hitData := false
		for _, b := range g.blocks {
			hitData = hitData || inRanges(ranges, b*mxBlock)
		}
		b, err := os.ReadFile(filepath.Join(mnt, p.resource, p.id, "vda", path))
		n++
		switch {
		case err == nil && !bytes.Equal(b, g.data):
			w := countDiff(b, g.data) + int64(max(len(b), len(g.data))-min(len(b), len(g.data)))
			t.Errorf("%s guest file %s: %d wrong bytes", p.name, path, w)
			st.wrongBytes(w)
		case err == nil && hitData:
			t.Errorf("%s guest file %s: reads right although a data block of it is damaged", p.name, path)
		case err != nil && len(ranges) == 0:
			t.Errorf("%s guest file %s on an undamaged disk: %v", p.name, path, err)
		case err != nil && !errors.Is(err, syscall.EIO):
			t.Errorf("%s guest file %s: %v, want EIO", p.name, path, err)
		}
	}
	return n
}

// countDiff counts the bytes in which a and b differ, over the shorter.
func countDiff(a, b []byte) int64 {
	if bytes.Equal(a, b) {
		return 0 // fast; the loop below is slow under -race
	}
	var n int64
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}
