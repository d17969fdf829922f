package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// cairnBin is the binary under test, set by TestMain.
var cairnBin string

func TestMain(m *testing.M) {
	cairnBin = os.Getenv("CAIRN_BIN")
	if cairnBin == "" {
		dir, err := os.MkdirTemp("", "cairn-bin")
		if err != nil {
			panic(err)
		}
		cairnBin = filepath.Join(dir, "cairn")
		cmd := exec.Command("go", "build", "-o", cairnBin, "../cmd/cairn")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build cairn:", err)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		removeShared()
		os.Exit(code)
	}
	code := m.Run()
	removeShared()
	os.Exit(code)
}

// needTool skips the test when a tool is missing, or fails it under CI.
func needTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed; CI must install it (integration/install-deps.sh)", n)
			}
			t.Skipf("%s is not installed (make deps)", n)
		}
	}
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

// cairn runs the binary with the vault given by env CAIRN_VAULT=vault.
func cairn(t testing.TB, vault string, args ...string) result {
	t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cairn %v: %v", args, err)
	}
	return r
}

// mustCairn runs the binary and fails the test on a non-zero exit.
func mustCairn(t testing.TB, vault string, args ...string) string {
	t.Helper()
	r := cairn(t, vault, args...)
	if r.code != 0 {
		t.Fatalf("cairn %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func mustJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
}

func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sourceTree copies real files (from the Go distribution's source,
// present wherever the tests build) into dir, up to about limit bytes.
func sourceTree(t testing.TB, dir string, limit int64) {
	t.Helper()
	src := filepath.Join(goRoot(t), "src")
	var total int64
	stop := errors.New("enough")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || total >= limit {
			if total >= limit {
				return stop
			}
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		total += int64(len(b))
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil && err != stop {
		t.Fatal(err)
	}
}

// makeExt4 builds an ext4 image of size from about fill bytes of real
// files and returns its path.
func makeExt4(t testing.TB, dir, size string, fill int64) string {
	t.Helper()
	needTool(t, "mkfs.ext4")
	tree := filepath.Join(dir, "tree")
	sourceTree(t, tree, fill)
	img := filepath.Join(dir, "disk.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", tree, img, size)
	return img
}

// scribble overwrites n scattered runs of length bytes of img with
// random data from a seeded generator, inside [from, to).
func scribble(t testing.TB, img string, seed int64, n, length int, from, to int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewSource(seed))
	buf := make([]byte, length)
	for i := 0; i < n; i++ {
		r.Read(buf)
		off := from + r.Int63n(to-from-int64(length))
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
}

// copyFile copies a file keeping holes.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	sh(t, "cp", "--sparse=always", src, dst)
}

func sameFile(t testing.TB, a, b string) {
	t.Helper()
	out, err := exec.Command("cmp", a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("cmp %s %s: %v: %s", a, b, err, out)
	}
}

// vaultState summarises a vault's packs and points, to check that a
// failed command changed nothing.
func vaultState(t testing.TB, vault string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(filepath.Join(vault, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			fmt.Fprintf(&b, "%s %d\n", d.Name(), info.Size())
		}
		return nil
	})
	b.WriteString(mustCairn(t, vault, "points", "--json"))
	return b.String()
}

func fileSize(t testing.TB, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// createSized makes a sparse file of size bytes and returns its path.
func createSized(t testing.TB, p string, size int64) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// allocated returns the bytes a file really occupies on disk.
func allocated(t testing.TB, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// goRoot is the Go installation the tests run with; its source tree is a
// ready supply of real files.
func goRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// execCombined runs a tool and returns its combined output, leaving the
// exit status to the caller (e2fsck exits 1 when it changed something).
func execCombined(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
