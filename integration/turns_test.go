package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTwoBackupsOfOneResourceAtOnce: without a daemon, a command on a
// vault that a running backup holds is refused in one line saying what
// to do, and harms nothing; with a daemon, two backups of the same
// resource started at once both succeed, one after the other, each the
// child of the point before it.
func TestTwoBackupsOfOneResourceAtOnce(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	big := bigImage(t, 1, 384<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K")

	// Without a daemon.
	first := exec.Command(cairnBin, "backup", "--name", "a", big)
	first.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	var out, errb bytes.Buffer
	first.Stdout, first.Stderr = &out, &errb
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// holds reports whether the first backup holds the vault's lock.
	holds := func() bool {
		b, _ := os.ReadFile("/proc/locks")
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && f[1] == "FLOCK" && f[4] == strconv.Itoa(first.Process.Pid) {
				return true
			}
		}
		return false
	}
	if !waitFor(10*time.Second, holds) {
		t.Fatal("the first backup did not take the vault")
	}
	refused := 0
	for _, args := range [][]string{{"backup", "--name", "a", big}, {"points"}, {"gc"}} {
		r := cairn(t, vault, args...)
		if r.code == 0 && !holds() {
			continue // the first was done already: nothing to check
		}
		refused++
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "in use by another process") ||
			!strings.Contains(r.stderr, "cairn daemon") {
			t.Errorf("%v beside a backup: exit %d %q, want exit 1 and one line with what to do", args, r.code, r.stderr)
		}
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("the first backup: %v %s", err, errb.String())
	}
	if refused == 0 {
		t.Fatal("the first backup was done before any other command ran")
	}
	var pts []struct {
		Point, Parent, Type string
	}
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
	if refused == 3 && (len(pts) != 1 || pts[0].Point != strings.TrimSpace(out.String())) {
		t.Fatalf("points after a refused backup: %+v", pts)
	}
	for len(pts) > 1 { // a backup came after the first: start from one point
		mustCairn(t, vault, "delete", pts[len(pts)-1].Point)
		pts = pts[:len(pts)-1]
	}

	// With one: both run, in turn.
	startDaemon(t, vault)
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = cairn(t, vault, "backup", "--name", "a", big)
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.code != 0 {
			t.Fatalf("a backup beside another through the daemon: exit %d %s", r.code, r.stderr)
		}
	}
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
	if len(pts) != 3 || pts[1].Parent != pts[0].Point || pts[2].Parent != pts[1].Point {
		t.Errorf("the chain after two backups at once: %+v, want a line", pts)
	}
	mustCairn(t, vault, "verify")
}
