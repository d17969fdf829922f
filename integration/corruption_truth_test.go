package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// The corruption matrix's vault and what it knows of it: every disk of
// every point as it was backed up, every blob of every pack, which
// blocks and map pages each point uses, and where each guest file of the
// ext4 disk lies. It is learnt from outside the binary: block hashes
// from the disks themselves (BLAKE3 of each block, a map page the
// BLAKE3 of its entries), checked against what the point records and
// the pack headers say, so that a wrong model fails the test at once.

// mxBlock is the matrix vault's block size: the ext4 disk's block size,
// so one damaged block is one guest block.
const mxBlock = 4 << 10

// mxPageEntries is the number of block hashes in one map page.
const mxPageEntries = 1024

type mxHash [32]byte

func (h mxHash) isZero() bool { return h == mxHash{} }

// mxDisk is one disk of one point.
type mxDisk struct {
	name   string
	image  string // a copy of what was backed up
	size   int64
	blocks []mxHash // per block; zero for a hole
	pages  []mxHash // per map page; zero for a page of holes
}

func (d *mxDisk) pageLen(p int) int {
	return min(mxPageEntries, len(d.blocks)-p*mxPageEntries)
}

type mxPoint struct {
	name, resource, id string
	record             string // path of its record, relative to the vault
	disks              []*mxDisk
}

type mxBlob struct {
	off, length int64
	kind        int64 // 1 data, 2 map page
	hash        mxHash
}

type mxPack struct {
	rel     string // relative to the vault
	id      string
	size    int64
	blobs   []mxBlob
	trailer int64 // where the blobs end and the trailer starts
}

// blobAt returns the blob holding byte off, or nil.
func (p *mxPack) blobAt(off int64) *mxBlob {
	i := sort.Search(len(p.blobs), func(i int) bool { return p.blobs[i].off+p.blobs[i].length > off })
	if i < len(p.blobs) && p.blobs[i].off <= off {
		return &p.blobs[i]
	}
	return nil
}

// mxGuestFile is a file of the ext4 disk of a point.
type mxGuestFile struct {
	data   []byte
	blocks []int64 // its data blocks, in the disk's 4 KiB blocks
}

type mxFixture struct {
	scratch    string // a tmpfs for the fixture and every trial
	vault      string
	points     []*mxPoint // sorted by name, as verify walks them
	packs      []*mxPack
	policies   []string                           // names
	policyJSON map[string]json.RawMessage         // as policy show --json gives it
	index      []string                           // index files, relative to the vault
	guest      map[string]map[string]*mxGuestFile // point → path → file
	names      []string                           // point names, sorted
}

func (f *mxFixture) point(name string) *mxPoint {
	for _, p := range f.points {
		if p.name == name {
			return p
		}
	}
	return nil
}

// newMatrixFixture builds the vault: web01, an ext4 disk (8 MiB, 4 KiB
// blocks, real files) in four points, files written and removed with
// debugfs between them; db01, two disks in three points, one of them
// sharing blocks with web01; app01, one disk in three points, with a
// block that occurs at several places of the disk. Unchanged blocks are
// shared along each chain, holes are never stored. Two policies.
func newMatrixFixture(t *testing.T) *mxFixture {
	t.Helper()
	f := &mxFixture{scratch: scratchTmpfs(t, "1g"), guest: map[string]map[string]*mxGuestFile{}}
	dir := f.tempDir(t)
	f.vault = filepath.Join(dir, "vault")
	mustCairn(t, f.vault, "init", "--chunk-size", "4K")
	images := map[string]string{} // POINT:DISK → kept copy
	// The fixture is the same in every run, so that a seed repeats its
	// trials: points at fixed times, filesystems made at a fixed time
	// with fixed UUIDs.
	when := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	backup := func(res string, disks ...string) string {
		t.Helper()
		when = when.Add(time.Minute)
		cmd := exec.Command(cairnBin, append([]string{"backup", "--name", res}, disks...)...)
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+f.vault, "CAIRN_NOW="+when.Format(time.RFC3339))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("backup %s: %v", res, err)
		}
		p := strings.TrimSpace(string(out))
		for _, d := range disks {
			name, path, _ := strings.Cut(d, "=")
			kept := filepath.Join(dir, "kept", strings.ReplaceAll(p, "@", "_")+"_"+name+".img")
			os.MkdirAll(filepath.Dir(kept), 0o755)
			copyFile(t, path, kept)
			images[p+":"+name] = kept
		}
		return p
	}
	rng := rand.New(rand.NewSource(1))

	// web01: a real ext4 filesystem, changed through debugfs.
	tree := filepath.Join(dir, "tree")
	sourceTree(t, tree, 2<<20)
	web := filepath.Join(dir, "web01.img")
	e2fs := func(name string, args ...string) { // at a fixed time, which mkfs.ext4 and debugfs stamp
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1764633600")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	const uuid = "6a1f0e2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	e2fs("mkfs.ext4", "-q", "-F", "-b", "4096", "-U", uuid, "-E", "hash_seed="+uuid, "-d", tree, web, "8M")
	files := map[string][]byte{}
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(tree, p)
			files["/"+filepath.ToSlash(rel)] = b
		}
		return nil
	})
	for k := 0; k < 4; k++ {
		if k > 0 {
			var cmds strings.Builder
			for i := 0; i < 3; i++ {
				name := fmt.Sprintf("new-%d-%d.txt", k, i)
				local := filepath.Join(dir, name)
				b := mxText(rng, 8<<10+rng.Intn(120<<10))
				os.WriteFile(local, b, 0o644)
				fmt.Fprintf(&cmds, "write %s %s\n", local, name)
				files["/"+name] = b
			}
			for _, p := range mxSortedKeys(files)[k*7 : k*7+2] {
				fmt.Fprintf(&cmds, "rm %s\n", p)
				delete(files, p)
			}
			cf := filepath.Join(dir, "cmds")
			os.WriteFile(cf, []byte(cmds.String()), 0o644)
			e2fs("debugfs", "-w", "-f", cf, web)
		}
		p := backup("web01", "vda="+web)
		f.guest[p] = guestBlocks(t, dir, web, files)
	}

	// db01: vdb shares a MiB with web01's data area.
	vda, vdb := filepath.Join(dir, "db-vda.img"), filepath.Join(dir, "db-vdb.img")
	os.WriteFile(vda, mxSparseText(rng, 2<<20), 0o644)
	wb, _ := os.ReadFile(web)
	db := make([]byte, 2<<20)
	copy(db, wb[3<<20:4<<20])
	copy(db[1<<20:], mxSparseText(rng, 1<<20))
	os.WriteFile(vdb, db, 0o644)
	for k := 0; k < 3; k++ {
		if k > 0 {
			scribble(t, vda, int64(10+k), 6, 4<<10, 0, 2<<20)
			scribble(t, vdb, int64(20+k), 2, 8<<10, 1<<20, 2<<20)
		}
		backup("db01", "vda="+vda, "vdb="+vdb)
	}

	// app01: block 10 recurs at blocks 20, 30 and 40.
	app := filepath.Join(dir, "app01.img")
	ab := mxSparseText(rng, 3<<20)
	for _, at := range []int{20, 30, 40} {
		copy(ab[at*mxBlock:(at+1)*mxBlock], ab[10*mxBlock:11*mxBlock])
	}
	os.WriteFile(app, ab, 0o644)
	for k := 0; k < 3; k++ {
		if k > 0 {
			scribble(t, app, int64(30+k), 4, 4<<10, 64<<10, 3<<20)
		}
		backup("app01", "vda="+app)
	}

	// Paused: a mount is a daemon, which would run a policy that falls
	// due (app01's at 02:00) and prune the points the truth knows.
	mustCairn(t, f.vault, "policy", "set", "web01", "--source", "vda="+web, "--every", "6h", "--keep-last", "3", "--paused")
	mustCairn(t, f.vault, "policy", "set", "app01", "--source", "vda="+app, "--at", "02:00", "--keep-daily", "7", "--paused")
	f.policies = []string{"app01", "web01"}
	f.policyJSON = map[string]json.RawMessage{}
	for _, name := range f.policies {
		var got struct{ Policy json.RawMessage }
		mustJSON(t, mustCairn(t, f.vault, "policy", "show", name, "--json"), &got)
		f.policyJSON[name] = got.Policy
	}

	f.learn(t, images)
	return f
}

// learn reads the point records and packs of the vault and checks them
// against the disks kept: every page hash a record names is the hash of
// the blocks the disk held, and every blob of every pack is one block or
// map page of some point, stored once.
func (f *mxFixture) learn(t *testing.T, images map[string]string) {
	t.Helper()
	recs, _ := filepath.Glob(filepath.Join(f.vault, "points", "*"))
	for _, path := range recs {
		rec := readRecordFile(t, path)
		p := &mxPoint{name: rec.Resource + "@" + rec.ID, resource: rec.Resource, id: rec.ID, record: "points/" + filepath.Base(path)}
		for _, rd := range rec.Disks {
			if rd.BlockSize != mxBlock {
				t.Fatalf("%s disk %s: block size %d", p.name, rd.Name, rd.BlockSize)
			}
			img, ok := images[p.name+":"+rd.Name]
			if !ok {
				t.Fatalf("no kept image of %s disk %s", p.name, rd.Name)
			}
			d := &mxDisk{name: rd.Name, image: img, size: rd.Size}
			data, _ := os.ReadFile(img)
			if int64(len(data)) != d.size {
				t.Fatalf("%s: %d bytes, the record says %d", img, len(data), d.size)
			}
			for off := 0; off < len(data); off += mxBlock {
				b := data[off:min(off+mxBlock, len(data))]
				var h mxHash
				if !bytes.Equal(b, make([]byte, len(b))) {
					h = blake3.Sum256(b)
				}
				d.blocks = append(d.blocks, h)
			}
			for pi := 0; pi*mxPageEntries < len(d.blocks); pi++ {
				entries := d.blocks[pi*mxPageEntries : pi*mxPageEntries+d.pageLen(pi)]
				var page []byte
				holes := true
				for _, h := range entries {
					page = append(page, h[:]...)
					holes = holes && h.isZero()
				}
				var ph mxHash
				if !holes {
					ph = blake3.Sum256(page)
				}
				d.pages = append(d.pages, ph)
			}
			if len(d.pages) != len(rd.Pages) {
				t.Fatalf("%s disk %s: %d map pages, the record has %d", p.name, d.name, len(d.pages), len(rd.Pages))
			}
			for i, s := range rd.Pages {
				if hex.EncodeToString(d.pages[i][:]) != s {
					t.Fatalf("%s disk %s: map page %d is %s, computed %x", p.name, d.name, i, s, d.pages[i])
				}
			}
			p.disks = append(p.disks, d)
		}
		f.points = append(f.points, p)
		f.names = append(f.names, p.name)
	}
	sort.Slice(f.points, func(i, j int) bool { return f.points[i].name < f.points[j].name })
	sort.Strings(f.names)
	if len(f.points) != 10 {
		t.Fatalf("%d points, want 10", len(f.points))
	}

	known := map[mxHash]int64{} // hash → kind
	for _, p := range f.points {
		for _, d := range p.disks {
			for _, h := range d.blocks {
				if !h.isZero() {
					known[h] = 1
				}
			}
			for _, h := range d.pages {
				if !h.isZero() {
					known[h] = 2
				}
			}
		}
	}
	stored := map[mxHash]string{}
	packs, _ := filepath.Glob(filepath.Join(f.vault, "packs", "*", "*.pack"))
	sort.Strings(packs)
	for _, path := range packs {
		rel, _ := filepath.Rel(f.vault, path)
		pk := &mxPack{rel: rel, id: strings.TrimSuffix(filepath.Base(path), ".pack"), size: fileSize(t, path), trailer: 16}
		b, _ := os.ReadFile(path)
		for _, bl := range blobs(t, path) {
			x := mxBlob{off: bl[0], kind: bl[1], length: bl[2]}
			copy(x.hash[:], b[bl[0]+16:bl[0]+48])
			if known[x.hash] != x.kind {
				t.Fatalf("pack %s at %d: blob %x of kind %d is no block or map page of any point", rel, x.off, x.hash, x.kind)
			}
			if other, dup := stored[x.hash]; dup {
				t.Fatalf("blob %x is stored twice (%s, %s): the truth would be ambiguous", x.hash, other, rel)
			}
			stored[x.hash] = rel
			pk.blobs = append(pk.blobs, x)
			pk.trailer = x.off + x.length
		}
		if pk.trailer+32 > pk.size {
			t.Fatalf("pack %s has no trailer after its blobs (%d of %d bytes)", rel, pk.trailer, pk.size)
		}
		f.packs = append(f.packs, pk)
	}
	if len(stored) != len(known) {
		t.Fatalf("packs store %d blobs, the points use %d", len(stored), len(known))
	}
	// Pack names are random: in the order of what they hold, a seed
	// picks the same pack in every run.
	sort.Slice(f.packs, func(i, j int) bool {
		a, b := f.packs[i].blobs, f.packs[j].blobs
		return len(a) > 0 && len(b) > 0 && bytes.Compare(a[0].hash[:], b[0].hash[:]) < 0
	})
	idx, _ := os.ReadDir(filepath.Join(f.vault, "index"))
	for _, e := range idx {
		f.index = append(f.index, "index/"+e.Name())
	}
}

type recordJSON struct {
	Resource string
	ID       string
	Disks    []struct {
		Name      string
		Size      int64
		BlockSize int `json:"block_size"`
		Pages     []string
	}
}

// readRecordFile decodes a point record: "CAIRNPNT", version, flags,
// length, the JSON manifest, its hash.
func readRecordFile(t *testing.T, path string) recordJSON {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 48 || string(b[:8]) != "CAIRNPNT" {
		t.Fatalf("%s: not a point record (%v)", path, err)
	}
	n := int(binary.BigEndian.Uint32(b[12:]))
	var rec recordJSON
	if err := json.Unmarshal(b[16:16+n], &rec); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rec
}

// guestBlocks records, for each file of the ext4 image, its content and
// its data blocks (debugfs blocks).
func guestBlocks(t *testing.T, dir, img string, files map[string][]byte) map[string]*mxGuestFile {
	t.Helper()
	var cmds strings.Builder
	var paths []string
	for _, p := range mxSortedKeys(files) {
		if strings.ContainsAny(p, " \t\n\"'\\") {
			continue
		}
		paths = append(paths, p)
		fmt.Fprintf(&cmds, "blocks %s\n", p)
	}
	cf := filepath.Join(dir, "blocks.cmds")
	os.WriteFile(cf, []byte(cmds.String()), 0o644)
	out, err := execCombined("debugfs", "-f", cf, img)
	if err != nil {
		t.Fatalf("debugfs blocks: %v\n%s", err, out)
	}
	got := map[string]*mxGuestFile{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(line, "debugfs: blocks "); ok {
			cur = p
			got[cur] = &mxGuestFile{data: files[cur]}
			continue
		}
		if cur == "" || got[cur] == nil {
			continue
		}
		for _, w := range strings.Fields(line) {
			n, err := strconv.ParseInt(w, 10, 64)
			if err != nil {
				t.Fatalf("debugfs blocks %s: %q", cur, line)
			}
			got[cur].blocks = append(got[cur].blocks, n)
		}
	}
	for _, p := range paths {
		g := got[p]
		// mkfs.ext4 -d leaves zero blocks of a file unallocated.
		if g == nil || len(g.blocks) == 0 && !bytes.Equal(g.data, make([]byte, len(g.data))) {
			t.Fatalf("debugfs lists no blocks for %s", p)
		}
	}
	return got
}

// mxText is text-like, compressible data with some random bytes.
func mxText(rng *rand.Rand, n int) []byte {
	words := []string{"cairn ", "stone ", "vault ", "block\n", "point ", "chain "}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if rng.Intn(6) == 0 {
			r := make([]byte, rng.Intn(512))
			rng.Read(r)
			b = append(b, r...)
			continue
		}
		b = append(b, words[rng.Intn(len(words))]...)
	}
	return b[:n]
}

// mxSparseText is mxText with runs of zero blocks, which become holes.
func mxSparseText(rng *rand.Rand, n int) []byte {
	b := mxText(rng, n)
	for i := 0; i < n/(256<<10); i++ {
		at := rng.Intn(n/mxBlock-8) * mxBlock
		clear(b[at : at+(1+rng.Intn(6))*mxBlock])
	}
	return b
}

// mxDamage is what cannot be read, by point and disk: byte ranges,
// merged and ascending, as verify reports them.
type mxDamage map[string]map[string][][2]int64

// expect computes which ranges of which points blobs hit make
// unreadable: a data block, the block's range wherever a disk holds it;
// a map page, the whole range of the page.
func (f *mxFixture) expect(hit map[mxHash]bool) mxDamage {
	out := mxDamage{}
	for _, p := range f.points {
		for _, d := range p.disks {
			var ranges [][2]int64
			add := func(first, n int64) {
				start, end := first*mxBlock, min((first+n)*mxBlock, d.size)
				if k := len(ranges); k > 0 && ranges[k-1][1] == start {
					ranges[k-1][1] = end
				} else {
					ranges = append(ranges, [2]int64{start, end})
				}
			}
			for pi, ph := range d.pages {
				first := int64(pi * mxPageEntries)
				if ph.isZero() {
					continue
				}
				if hit[ph] {
					add(first, int64(d.pageLen(pi)))
					continue
				}
				for i := first; i < first+int64(d.pageLen(pi)); i++ {
					if h := d.blocks[i]; !h.isZero() && hit[h] {
						add(i, 1)
					}
				}
			}
			if len(ranges) > 0 {
				if out[p.name] == nil {
					out[p.name] = map[string][][2]int64{}
				}
				out[p.name][d.name] = ranges
			}
		}
	}
	return out
}

// rangeAt returns the range holding off; inRanges must be true.
func rangeAt(ranges [][2]int64, off int64) [2]int64 {
	for _, r := range ranges {
		if off >= r[0] && off < r[1] {
			return r
		}
	}
	return [2]int64{off, off}
}

func inRanges(ranges [][2]int64, off int64) bool {
	for _, r := range ranges {
		if off >= r[0] && off < r[1] {
			return true
		}
	}
	return false
}
