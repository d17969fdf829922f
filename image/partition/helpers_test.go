package partition

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// needTool skips the test when an outside tool is missing, except under
// CI=true, where a missing tool must fail loudly.
func needTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("tool %s is required under CI: %v", n, err)
			}
			t.Skipf("tool %s not installed", n)
		}
	}
}

// run runs a command, feeding stdin, and returns its standard output.
func run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s%s", name, args, err, out.String(), errb.String())
	}
	return out.String()
}

// blankImage makes a sparse file of size bytes in a temporary directory.
func blankImage(t testing.TB, size int64) string {
	t.Helper()
	p := t.TempDir() + "/disk.img"
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

func openFile(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readImage(t testing.TB, p string) (*Table, error) {
	t.Helper()
	f := openFile(t, p)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Read(f, st.Size())
}

// patch overwrites bytes of the file at off.
func patch(t testing.TB, p string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
