package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// truthFixture is a vault with several resources and points, and a copy
// of every disk of every point, to check restores against.
type truthFixture struct {
	vault    string
	disks    map[string]string // POINT:DISK → a copy of what it holds
	soloPack string            // pack holding only the blocks of solo's point
	solo     string            // solo's point
}

// newTruthFixture makes web01 (two points of an ext4 disk), db01 (one
// point of two disks) and solo (one point of random data in a pack of its
// own), with 64 KiB blocks.
func newTruthFixture(t *testing.T) *truthFixture {
	t.Helper()
	needTool(t, "mkfs.ext4", "cmp")
	dir := t.TempDir()
	f := &truthFixture{vault: filepath.Join(dir, "vault"), disks: map[string]string{}}
	mustCairn(t, f.vault, "init", "--chunk-size", "64K")
	keep := func(point, disk, img string) {
		p := filepath.Join(dir, strings.NewReplacer("@", "_", ":", "_").Replace(point+":"+disk)+".img")
		copyFile(t, img, p)
		f.disks[point+":"+disk] = p
	}
	web := makeExt4(t, dir, "16M", 3<<20)
	p := strings.TrimSpace(mustCairn(t, f.vault, "backup", "--name", "web01", "vda="+web))
	keep(p, "vda", web)
	scribble(t, web, 1, 6, 64<<10, 1<<20, 15<<20)
	p = strings.TrimSpace(mustCairn(t, f.vault, "backup", "--name", "web01", "vda="+web))
	keep(p, "vda", web)

	data := filepath.Join(dir, "data.raw")
	createSized(t, data, 2<<20)
	scribble(t, data, 2, 8, 64<<10, 0, 2<<20)
	p = strings.TrimSpace(mustCairn(t, f.vault, "backup", "--name", "db01", "vda="+web, "vdb="+data))
	keep(p, "vda", web)
	keep(p, "vdb", data)

	before := packSet(t, f.vault)
	solo := filepath.Join(dir, "solo.raw")
	createSized(t, solo, 1<<20)
	scribble(t, solo, 3, 4, 128<<10, 0, 1<<20)
	f.solo = strings.TrimSpace(mustCairn(t, f.vault, "backup", "--name", "solo", "vda="+solo))
	keep(f.solo, "vda", solo)
	for p := range packSet(t, f.vault) {
		if !before[p] {
			f.soloPack = p
		}
	}
	if f.soloPack == "" {
		t.Fatal("solo's backup wrote no pack")
	}
	return f
}

func packSet(t *testing.T, vault string) map[string]bool {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(vault, "packs", "*", "*.pack"))
	out := map[string]bool{}
	for _, p := range packs {
		out[p] = true
	}
	return out
}

// copyOf makes a copy of the fixture's vault to damage.
func (f *truthFixture) copyOf(t *testing.T) string {
	t.Helper()
	v := filepath.Join(t.TempDir(), "vault")
	sh(t, "cp", "-a", f.vault, v)
	return v
}

// checkRestores restores every disk of every point but those of skip
// and compares it with what was backed up.
func (f *truthFixture) checkRestores(t *testing.T, vault string, skip ...string) {
	t.Helper()
	keys := make([]string, 0, len(f.disks))
	for k := range f.disks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := filepath.Join(t.TempDir(), "restored.img")
	n := 0
outer:
	for _, k := range keys {
		point, disk, _ := strings.Cut(k, ":")
		for _, s := range skip {
			if s == point {
				continue outer
			}
		}
		mustCairn(t, vault, "restore", "--force", "--disk", disk, point, out)
		sameFile(t, f.disks[k], out)
		n++
	}
	if n == 0 {
		t.Fatal("no point left to restore")
	}
}

// oneLineError checks a refusal: exit 1, one "cairn: " line with want.
func oneLineError(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "cairn: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want exit 1 and one line with %q", r.code, r.stderr, want)
	}
}

// blobs lists a pack's blobs: offset, kind (1 data, 2 map page), length.
func blobs(t *testing.T, pack string) [][3]int64 {
	t.Helper()
	b, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	var out [][3]int64
	for off := int64(16); off+56 <= int64(len(b)) && string(b[off:off+4]) == "BLOB"; {
		n := 56 + int64(binary.BigEndian.Uint32(b[off+12:]))
		out = append(out, [3]int64{off, int64(b[off+4]), n})
		off += n
	}
	return out
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x40
	f.WriteAt(b, off)
}

type damageJSON struct {
	Point  string
	Record string
	Disks  []struct {
		Disk   string
		Ranges [][2]int64
		Bytes  int64
	}
}

// TestIndexLossAndRepair loses or damages the index in each way a user
// can: every command refuses with one line saying to run cairn repair,
// verify never reports a healthy vault, and after repair every point
// restores byte for byte.
func TestIndexLossAndRepair(t *testing.T) {
	f := newTruthFixture(t)
	for _, c := range []struct {
		name string
		lose func(vault string)
	}{
		{"index folder deleted", func(v string) { os.RemoveAll(filepath.Join(v, "index")) }},
		{"MANIFEST deleted", func(v string) { os.Remove(filepath.Join(v, "index", "MANIFEST")) }},
		{"index emptied", func(v string) {
			ents, _ := os.ReadDir(filepath.Join(v, "index"))
			for _, e := range ents {
				os.Remove(filepath.Join(v, "index", e.Name()))
			}
		}},
		{"sst truncated", func(v string) {
			ssts, _ := filepath.Glob(filepath.Join(v, "index", "*.sst"))
			for _, p := range ssts {
				st, _ := os.Stat(p)
				os.Truncate(p, st.Size()*2/3)
			}
		}},
		{"sst byte changed", func(v string) {
			ssts, _ := filepath.Glob(filepath.Join(v, "index", "*.sst"))
			for _, p := range ssts {
				st, _ := os.Stat(p)
				flipByte(t, p, st.Size()/3)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			vault := f.copyOf(t)
			c.lose(vault)
			for _, args := range [][]string{{"points"}, {"verify"}, {"restore", f.solo, filepath.Join(t.TempDir(), "x")},
				{"backup", "--name", "x", f.disks[f.solo+":vda"]}} {
				r := cairn(t, vault, args...)
				oneLineError(t, r, "run cairn repair")
				if strings.Contains(r.stderr, "panic") || strings.Contains(r.stdout, "no problems") {
					t.Errorf("%v: %q %q", args, r.stdout, r.stderr)
				}
			}
			var rep struct {
				Points  int
				Damaged []damageJSON
			}
			mustJSON(t, mustCairn(t, vault, "repair", "--json"), &rep)
			if rep.Points != 4 || len(rep.Damaged) != 0 {
				t.Errorf("repair: %+v", rep)
			}
			f.checkRestores(t, vault)
			mustCairn(t, vault, "verify", "--data")
		})
	}
}

// TestStorageDamage damages what storage holds: each damaged point is
// named with its disks and ranges, the others restore byte for byte,
// and repair says the same.
func TestStorageDamage(t *testing.T) {
	f := newTruthFixture(t)

	t.Run("pack deleted", func(t *testing.T) {
		vault := f.copyOf(t)
		os.Remove(filepath.Join(vault, strings.TrimPrefix(f.soloPack, f.vault)))
		f.expectDamaged(t, vault, "verify", f.solo)
		f.checkRestores(t, vault, f.solo)
		f.repairNames(t, vault, f.solo)
	})
	t.Run("pack truncated", func(t *testing.T) {
		vault := f.copyOf(t)
		p := filepath.Join(vault, strings.TrimPrefix(f.soloPack, f.vault))
		st, _ := os.Stat(p)
		os.Truncate(p, st.Size()/2)
		f.expectDamaged(t, vault, "verify", f.solo)
		f.checkRestores(t, vault, f.solo)
		f.repairNames(t, vault, f.solo)
	})
	t.Run("map page byte flipped", func(t *testing.T) {
		vault := f.copyOf(t)
		p := filepath.Join(vault, strings.TrimPrefix(f.soloPack, f.vault))
		flipped := false
		for _, b := range blobs(t, p) {
			if b[1] == 2 {
				flipByte(t, p, b[0]+56+b[2]/4)
				flipped = true
			}
		}
		if !flipped {
			t.Fatal("no map page in solo's pack")
		}
		f.expectDamaged(t, vault, "verify --data", f.solo)
		r := cairn(t, vault, "restore", f.solo, filepath.Join(t.TempDir(), "r.img"))
		oneLineError(t, r, "damaged")
		f.checkRestores(t, vault, f.solo)
	})
	t.Run("point record byte flipped", func(t *testing.T) {
		vault := f.copyOf(t)
		flipByte(t, filepath.Join(vault, "points", f.solo), 40)
		// The index still has its good copy; verify reads storage.
		r := cairn(t, vault, "verify")
		if r.code != 1 || !strings.Contains(r.stdout, "point record "+f.solo) {
			t.Errorf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		os.RemoveAll(filepath.Join(vault, "index"))
		var rep struct {
			Points     int
			BadRecords []struct{ Point string } `json:"bad_records"`
		}
		r = cairn(t, vault, "repair", "--json")
		mustJSON(t, r.stdout, &rep)
		if r.code != 1 || rep.Points != 3 || len(rep.BadRecords) != 1 || rep.BadRecords[0].Point != f.solo {
			t.Errorf("repair: exit %d %+v", r.code, rep)
		}
		// The others list and restore; the bad one is named in points.
		if out := mustCairn(t, vault, "points"); !strings.Contains(out, "! "+f.solo) {
			t.Errorf("points does not name the damaged record:\n%s", out)
		}
		f.checkRestores(t, vault, f.solo)
	})
	t.Run("block damaged then healed by a backup", func(t *testing.T) {
		vault := f.copyOf(t)
		p := filepath.Join(vault, strings.TrimPrefix(f.soloPack, f.vault))
		for _, b := range blobs(t, p) {
			if b[1] == 1 {
				flipByte(t, p, b[0]+56+b[2]/2)
				break
			}
		}
		d := f.expectDamaged(t, vault, "verify --data", f.solo)
		if out := mustCairn(t, vault, "show", f.solo); !strings.Contains(out, "DAMAGED") {
			t.Errorf("show does not say the point is damaged:\n%s", out)
		}
		// What can be read still restores.
		out := filepath.Join(t.TempDir(), "partial.img")
		r := cairn(t, vault, "restore", "--skip-damaged", f.solo, out)
		oneLineError(t, r, "damaged range")
		if fileSize(t, out) != fileSize(t, f.disks[f.solo+":vda"]) {
			t.Error("restore --skip-damaged did not keep a whole-sized file")
		}
		checkPartial(t, out, f.disks[f.solo+":vda"], d.Disks[0].Ranges)
		// The same source again: stored anew, not referred to.
		mustCairn(t, vault, "backup", "--name", "solo", "vda="+f.disks[f.solo+":vda"])
		f.checkRestores(t, vault)
		mustCairn(t, vault, "verify", "--data")
		if out := mustCairn(t, vault, "points", "solo"); strings.Contains(out, "!") {
			t.Errorf("healed point still marked:\n%s", out)
		}
	})
}

// expectDamaged runs verify (with its args) and checks that exactly
// point is damaged, with disks and ranges; it returns what verify said.
func (f *truthFixture) expectDamaged(t *testing.T, vault, verify, point string) damageJSON {
	t.Helper()
	args := append(strings.Fields(verify), "--json")
	r := cairn(t, vault, args...)
	var rep struct {
		Damaged       []damageJSON
		DamagedPoints []string `json:"damaged_points"`
	}
	mustJSON(t, r.stdout, &rep)
	if r.code != 1 || len(rep.Damaged) != 1 || rep.Damaged[0].Point != point || len(rep.Damaged[0].Disks) == 0 ||
		len(rep.Damaged[0].Disks[0].Ranges) == 0 || rep.Damaged[0].Disks[0].Disk != "vda" {
		t.Fatalf("%s: exit %d, damaged %+v", verify, r.code, rep.Damaged)
	}
	text := cairn(t, vault, strings.Fields(verify)...).stdout
	if !strings.Contains(text, "damaged:  "+point+" disk vda") {
		t.Errorf("%s does not name %s disk vda:\n%s", verify, point, text)
	}
	return rep.Damaged[0]
}

// repairNames rebuilds the index and checks it names exactly point.
func (f *truthFixture) repairNames(t *testing.T, vault, point string) {
	t.Helper()
	os.RemoveAll(filepath.Join(vault, "index"))
	r := cairn(t, vault, "repair", "--json")
	var rep struct{ Damaged []damageJSON }
	mustJSON(t, r.stdout, &rep)
	if r.code != 1 || len(rep.Damaged) != 1 || rep.Damaged[0].Point != point {
		t.Errorf("repair: exit %d %+v", r.code, rep)
	}
	f.checkRestores(t, vault, point)
}

// checkPartial checks a restore with damaged ranges: zeros there, the
// original bytes everywhere else.
func checkPartial(t *testing.T, got, want string, ranges [][2]int64) {
	t.Helper()
	g, _ := os.ReadFile(got)
	w, _ := os.ReadFile(want)
	for _, r := range ranges {
		if !bytes.Equal(g[r[0]:r[1]], make([]byte, r[1]-r[0])) {
			t.Errorf("damaged range [%d, %d) is not zeros", r[0], r[1])
		}
		copy(w[r[0]:r[1]], make([]byte, r[1]-r[0]))
	}
	if !bytes.Equal(g, w) {
		t.Error("restore --skip-damaged differs outside the damaged ranges")
	}
}

// TestKillDuringRepair kills repair with SIGKILL at random moments: after
// each, the vault either opens or asks for a repair, and a final repair
// brings every point back.
func TestKillDuringRepair(t *testing.T) {
	f := newTruthFixture(t)
	vault := f.copyOf(t)
	os.RemoveAll(filepath.Join(vault, "index"))
	start := time.Now()
	r := cairn(t, vault, "repair", "--json")
	took := time.Since(start)
	var rep struct{ Points int }
	mustJSON(t, r.stdout, &rep)
	if r.code != 0 || rep.Points != 4 {
		t.Fatalf("repair: exit %d %s", r.code, r.stderr)
	}
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 8; i++ {
		if i%2 == 0 {
			os.RemoveAll(filepath.Join(vault, "index"))
		}
		cmd := exec.Command(cairnBin, "repair")
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rnd.Int63n(int64(took) + 1))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		r := cairn(t, vault, "points", "--json")
		switch {
		case r.code == 0:
			var pts []json.RawMessage
			mustJSON(t, r.stdout, &pts)
			if len(pts) != 4 {
				t.Fatalf("after a kill at %v: %d points", delay, len(pts))
			}
		case strings.Contains(r.stderr, "run cairn repair"):
		default:
			t.Fatalf("after a kill at %v: exit %d %q", delay, r.code, r.stderr)
		}
	}
	mustCairn(t, vault, "repair")
	f.checkRestores(t, vault)
	mustCairn(t, vault, "verify", "--data")
}
