package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cairnWith runs the binary with exactly the cairn variables in env
// (CAIRN_VAULT, CAIRN_SOCKET), none inherited.
func cairnWith(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(cairnBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_VAULT=") && !strings.HasPrefix(kv, "CAIRN_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
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

// TestSocketNamesAnotherVault: CAIRN_SOCKET leads every command to one
// daemon, but a command that names another vault (--vault, CAIRN_VAULT)
// is refused there instead of running on the daemon's vault; naming the
// daemon's vault, by any path, or none, runs on it.
func TestSocketNamesAnotherVault(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	disk := createSized(t, filepath.Join(dir, "d.raw"), 1<<20)
	scribble(t, disk, 7, 4, 10<<10, 0, 1<<20)
	mustCairn(t, a, "init", "--chunk-size", "64K")
	mustCairn(t, b, "init", "--chunk-size", "64K")
	mustCairn(t, a, "backup", "--name", "ra", disk)
	pb := strings.TrimSpace(mustCairn(t, b, "backup", "--name", "rb", disk))

	sock := filepath.Join(dir, "daemon.sock")
	d := exec.Command(cairnBin, "daemon", "--socket", sock)
	d.Env = append(os.Environ(), "CAIRN_VAULT="+a)
	log := &lockedBuffer{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Wait() }()
	t.Cleanup(func() {
		d.Process.Signal(syscall.SIGTERM)
		if err := <-done; err != nil {
			t.Errorf("daemon exit: %v\n%s", err, log)
		}
	})
	if !waitFor(10*time.Second, func() bool { return strings.Contains(log.String(), "serving") }) {
		t.Fatalf("daemon did not start:\n%s", log)
	}
	viaSock := "CAIRN_SOCKET=" + sock
	// stateA is vaultState for the daemon's vault, read through it.
	stateA := func() string {
		t.Helper()
		var s strings.Builder
		packs, _ := filepath.Glob(filepath.Join(a, "packs", "*", "*"))
		for _, p := range packs {
			s.WriteString(p + "\n")
		}
		r := cairnWith(t, []string{viaSock}, "points", "--json")
		if r.code != 0 {
			t.Fatalf("points through the daemon: %d %s", r.code, r.stderr)
		}
		return s.String() + r.stdout
	}
	beforeA, beforeB := stateA(), vaultState(t, b)

	for _, c := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"--vault", b, "backup", "--name", "x", disk}},
		{nil, []string{"backup", "--vault", b, "--name", "x", disk}},
		{nil, []string{"delete", "--vault=" + b, pb}},
		{nil, []string{"points", "--vault", b}},
		{[]string{"CAIRN_VAULT=" + b}, []string{"points"}},
	} {
		r := cairnWith(t, append(c.env, viaSock), c.args...)
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "vault "+b) ||
			!strings.Contains(r.stderr, "serves "+a) || !strings.Contains(r.stderr, "CAIRN_SOCKET") {
			t.Errorf("%v %v: exit %d %q; want exit 1 and one line naming both vaults", c.env, c.args, r.code, r.stderr)
		}
	}
	if got := stateA(); got != beforeA {
		t.Errorf("the daemon's vault changed:\n%s\nwas\n%s", got, beforeA)
	}
	if got := vaultState(t, b); got != beforeB {
		t.Errorf("the other vault changed:\n%s\nwas\n%s", got, beforeB)
	}

	// The daemon's vault, through a symlink or by CAIRN_VAULT, or no
	// vault at all: the command runs on the daemon's.
	link := filepath.Join(dir, "a-link")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	r := cairnWith(t, []string{viaSock}, "backup", "--vault", link, "--name", "ra2", disk)
	if r.code != 0 {
		t.Fatalf("backup naming the daemon's vault by a symlink: %d %s", r.code, r.stderr)
	}
	p := strings.TrimSpace(r.stdout)
	var pts []pointJSON
	mustJSON(t, cairnWith(t, []string{viaSock}, "points", "--json").stdout, &pts)
	if len(pts) != 2 {
		t.Errorf("points with no vault named: %d, want the daemon's 2", len(pts))
	}
	if r := cairnWith(t, []string{viaSock, "CAIRN_VAULT=" + a}, "delete", p); r.code != 0 {
		t.Errorf("delete with CAIRN_VAULT of the daemon's vault: %d %s", r.code, r.stderr)
	}
	// The backup and the delete ran as jobs of the daemon: one line each
	// in its log. Each refusal is a line too.
	if n := len(regexp.MustCompile(`job \S+ (backup ra2|delete \S+) succeeded`).FindAllString(log.String(), -1)); n != 2 {
		t.Errorf("%d jobs ran in the daemon, want 2:\n%s", n, log)
	}
	if n := strings.Count(log.String(), "refused "); n != 5 {
		t.Errorf("%d refusals logged, want 5:\n%s", n, log)
	}
}
