package integration

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillDuringBackup kills backups with SIGKILL at random moments. After
// each kill the vault verifies, the committed point restores byte for
// byte, and a final rerun succeeds reusing the blocks already stored.
func TestKillDuringBackup(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	needTool(t, "mkfs.ext4", "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "256M", 100<<20)
	v1 := filepath.Join(dir, "v1.img")
	copyFile(t, img, v1)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	first := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))

	// Each attempt backs up a new disk state with plenty to write.
	scribble(t, img, 7, 60, 1<<20, 0, 250<<20)
	start := time.Now()
	full := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "probe", img))
	took := time.Since(start)
	mustCairn(t, vault, "delete", full)
	t.Logf("an uninterrupted backup takes %v", took)

	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	killed := 0
	for i := 0; i < 4; i++ {
		scribble(t, img, int64(100+i), 60, 1<<20, 0, 250<<20)
		delay := time.Duration(r.Int63n(int64(took)))
		cmd := exec.Command(cairnBin, "backup", "--name", "vm", img)
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if err != nil {
			killed++
		}
		t.Logf("kill after %v: %v", delay, err)
		if out := cairn(t, vault, "verify"); out.code != 0 {
			t.Fatalf("verify after kill at %v: %s%s", delay, out.stdout, out.stderr)
		}
		rest := filepath.Join(dir, "r.img")
		mustCairn(t, vault, "restore", "--force", first, rest)
		sameFile(t, v1, rest)
	}
	if killed == 0 {
		t.Log("no backup was interrupted (all finished before the kill)")
	}
	var p pointJSON
	mustJSON(t, mustCairn(t, vault, "backup", "--name", "vm", "--json", img), &p)
	mustCairn(t, vault, "verify", "--data")
	rest := filepath.Join(dir, "r2.img")
	mustCairn(t, vault, "restore", p.Point, rest)
	sameFile(t, img, rest)
}

// TestBadInput checks that each mistake gets one clear line on stderr, a
// non-zero exit, and leaves the vault as it was.
func TestBadInput(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "32M", 4<<20)
	mustCairn(t, vault, "init")
	p1 := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "a", img))
	time.Sleep(1100 * time.Millisecond) // a second point in another second
	p2 := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "a", img))
	common := p1[:len("a@20261121T1")]
	if !strings.HasPrefix(p2, common) {
		common = "a@2" // the two points straddle an hour; still ambiguous
	}
	before := vaultState(t, vault)
	existing := filepath.Join(dir, "exists.img")
	createSized(t, existing, 1)

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing source", []string{"backup", "--name", "a", filepath.Join(dir, "nope.img")}, 1, "no such file"},
		{"directory source", []string{"backup", "--name", "a", dir}, 1, "is a directory"},
		{"bad resource name", []string{"backup", "--name", "a b", img}, 2, "invalid name"},
		{"no sources", []string{"backup", "--name", "a"}, 2, "usage"},
		{"missing --name", []string{"backup", img}, 2, "name"},
		{"unknown point", []string{"show", "a@19990101"}, 1, "no such point"},
		{"unknown resource", []string{"show", "zzz@latest"}, 1, "no points"},
		{"ambiguous prefix", []string{"show", common}, 1, "ambiguous"},
		{"point without @", []string{"show", "a"}, 1, "NAME@ID"},
		{"wrong flag", []string{"points", "--frobnicate"}, 2, "frobnicate"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"init twice", []string{"init"}, 1, "already initialized"},
		{"restore over a file", []string{"restore", p1, existing}, 1, "already exists"},
		{"restore unknown disk", []string{"restore", "--disk", "vdz", p1, filepath.Join(dir, "x")}, 1, "no disk"},
		{"delete unknown point", []string{"delete", p1, "a@1999"}, 1, "no such point"},
		{"bad chunk size", []string{"--vault", filepath.Join(dir, "v2"), "init", "--chunk-size", "3K"}, 2, "power of two"},
		{"bad compression", []string{"--vault", filepath.Join(dir, "v3"), "init", "--compression", "xz"}, 2, "unknown compression"},
		{"uninitialized vault", []string{"--vault", filepath.Join(dir, "none"), "points"}, 1, "not a cairn vault"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cairn(t, vault, c.args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, c.code, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "cairn: ") {
				t.Errorf("stderr is not one 'cairn: ' line: %q", r.stderr)
			}
			if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(c.want)) {
				t.Errorf("stderr %q lacks %q", r.stderr, c.want)
			}
		})
	}
	if after := vaultState(t, vault); after != before {
		t.Errorf("bad input changed the vault:\nbefore %s\nafter %s", before, after)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("failed restore left a target file")
	}
	mustCairn(t, vault, "verify", "--data")
}
