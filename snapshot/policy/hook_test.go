package policy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hookEnv is a hook environment with this machine's PATH (for sh and
// sleep) and vars.
func hookEnv(vars ...string) map[string]string {
	m := map[string]string{"PATH": os.Getenv("PATH")}
	for i := 0; i+1 < len(vars); i += 2 {
		m[vars[i]] = vars[i+1]
	}
	return m
}

// syncBuffer is a bytes.Buffer safe for the hook's writer and a reader.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	onWrite func(string)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	if s.onWrite != nil {
		s.onWrite(s.b.String())
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// alive reports whether pid is a process that is not a zombie.
func alive(pid int) bool {
	_, state, ok := procGroup(pid)
	return ok && state != 'Z' && state != 'X'
}

// pids reads the process ids a hook printed, one a line.
func pids(t testing.TB, out string) []int {
	t.Helper()
	var ps []int
	for _, l := range strings.Fields(out) {
		if n, err := strconv.Atoi(l); err == nil {
			ps = append(ps, n)
		}
	}
	if len(ps) == 0 {
		t.Fatalf("no pids in the hook's output %q", out)
	}
	return ps
}

func TestRunHook(t *testing.T) {
	ctx := t.Context()
	t.Setenv("CAIRN_LEAK", "from the test process")

	t.Run("output and success", func(t *testing.T) {
		var out syncBuffer
		err := RunHook(ctx, []string{"sh", "-c", "echo to stdout; echo to stderr >&2; cat; pwd"}, hookEnv(), 5*time.Second, &out)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != "to stdout\nto stderr\n/\n" {
			t.Errorf("output %q: want both streams, no stdin, in /", got)
		}
	})
	t.Run("exactly the environment given", func(t *testing.T) {
		var out syncBuffer
		env := hookEnv("CAIRN_POLICY", "web01", "CAIRN_HOOK", "pre", "CAIRN_DISKS", "vda=/dev/vg0/web01 data=/srv/data.img")
		if err := RunHook(ctx, []string{"env"}, env, 5*time.Second, &out); err != nil {
			t.Fatal(err)
		}
		got := strings.Split(strings.TrimSpace(out.String()), "\n")
		slices.Sort(got)
		want, _ := environList(env)
		if !slices.Equal(got, want) {
			t.Errorf("env = %q\nwant %q", got, want)
		}
	})
	t.Run("no output writer", func(t *testing.T) {
		if err := RunHook(ctx, []string{"sh", "-c", "echo lost"}, hookEnv(), 5*time.Second, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("exit status", func(t *testing.T) {
		err := RunHook(ctx, []string{"sh", "-c", "echo failing; exit 3"}, hookEnv(), 5*time.Second, nil)
		var ee *exec.ExitError
		if err == nil || err.Error() != "hook sh: exit status 3" || !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("err = %v, want exit status 3", err)
		}
	})
	t.Run("killed by a signal from elsewhere", func(t *testing.T) {
		err := RunHook(ctx, []string{"sh", "-c", "kill -KILL $$"}, hookEnv(), 5*time.Second, nil)
		if err == nil || err.Error() != "hook sh: killed by SIGKILL" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		err := RunHook(ctx, []string{"no-such-hook"}, hookEnv(), 5*time.Second, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "hook no-such-hook: not found on PATH") {
			t.Fatalf("err = %v", err)
		}
		if err := RunHook(ctx, []string{"sh", "-c", "true"}, nil, 5*time.Second, nil); err == nil || !strings.Contains(err.Error(), "no PATH") {
			t.Fatalf("a bare name without PATH: %v", err)
		}
		if err := RunHook(ctx, nil, nil, time.Second, nil); err == nil {
			t.Fatal("no argv: no error")
		}
	})
	t.Run("a bad environment", func(t *testing.T) {
		if err := RunHook(ctx, []string{"sh", "-c", "true"}, hookEnv("A=B", "c"), time.Second, nil); err == nil {
			t.Fatal("no error")
		}
	})
}

// A hook past its timeout is stopped with its whole process group: no
// sleep survives.
func TestRunHookTimeout(t *testing.T) {
	var out syncBuffer
	argv := []string{"sh", "-c", "echo $$; sleep 60 & echo $!; sleep 60"}
	err := RunHook(t.Context(), argv, hookEnv(), 500*time.Millisecond, &out)
	if !errors.Is(err, ErrTimeout) || err.Error() != "hook sh: timed out after 500ms; stopped with SIGTERM" {
		t.Fatalf("err = %v", err)
	}
	ps := pids(t, out.String())
	if groupAlive(ps[0]) {
		t.Errorf("process group %d still has processes", ps[0])
	}
	for _, pid := range ps {
		if alive(pid) {
			t.Errorf("process %d survived", pid)
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// A group that ignores SIGTERM gets SIGKILL after the grace.
func TestRunHookKill(t *testing.T) {
	var out syncBuffer
	argv := []string{"sh", "-c", `trap "" TERM; echo $$; sleep 60 & echo $!; sleep 60`}
	err := runHook(t.Context(), argv, hookEnv(), 500*time.Millisecond, 200*time.Millisecond, &out)
	if !errors.Is(err, ErrTimeout) || err.Error() != "hook sh: timed out after 500ms; killed with SIGKILL after 200ms (SIGTERM did not stop it)" {
		t.Fatalf("err = %v", err)
	}
	ps := pids(t, out.String())
	if groupAlive(ps[0]) {
		t.Errorf("process group %d still has processes", ps[0])
	}
	for _, pid := range ps {
		if alive(pid) {
			t.Errorf("process %d survived", pid)
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

func TestRunHookCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	out.onWrite = func(s string) {
		if strings.Count(s, "\n") == 2 {
			cancel() // both pids are out: the hook is running
		}
	}
	argv := []string{"sh", "-c", "echo $$; sleep 60 & echo $!; sleep 60"}
	err := RunHook(ctx, argv, hookEnv(), time.Minute, out)
	if !errors.Is(err, context.Canceled) || err.Error() != "hook sh: canceled (context canceled); stopped with SIGTERM" {
		t.Fatalf("err = %v", err)
	}
	for _, pid := range pids(t, out.String()) {
		if alive(pid) {
			t.Errorf("process %d survived", pid)
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	if err := RunHook(ctx, []string{"sh", "-c", "echo never"}, hookEnv(), time.Minute, out); !errors.Is(err, context.Canceled) ||
		!strings.Contains(err.Error(), "not started") {
		t.Fatalf("a done ctx: %v", err)
	}
}

// A hook that exits leaving a process that holds its output open
// returns (its own status) soon after, and the process is left alone.
func TestRunHookLeavesBackground(t *testing.T) {
	var out syncBuffer
	start := time.Now()
	err := RunHook(t.Context(), []string{"sh", "-c", "sleep 60 & echo $!"}, hookEnv(), time.Minute, &out)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("RunHook took %s", d)
	}
	ps := pids(t, out.String())
	if !alive(ps[0]) {
		t.Errorf("the background process %d was stopped", ps[0])
	}
	_ = unix.Kill(ps[0], unix.SIGKILL)
	if !strings.Contains(out.String(), "exited leaving processes") {
		t.Errorf("output %q does not say what is not logged", out.String())
	}
}

func TestHookEnv(t *testing.T) {
	e := HookEnv{
		Policy: "web01",
		Vault:  "/srv/vault",
		Hook:   Pre,
		Disks:  []Source{{Disk: "vda", Path: "/dev/vg0/web01"}, {Path: "/srv/data.img"}},
		Result: Success, // not for a pre hook
		Point:  "web01@20261121T020002Z",
		Path:   "/usr/bin:/bin",
		Lang:   "C.UTF-8",
	}
	want := map[string]string{
		"CAIRN_POLICY":   "web01",
		"CAIRN_RESOURCE": "web01",
		"CAIRN_VAULT":    "/srv/vault",
		"CAIRN_HOOK":     "pre",
		"CAIRN_DISKS":    "vda=/dev/vg0/web01 data=/srv/data.img",
		"PATH":           "/usr/bin:/bin",
		"LANG":           "C.UTF-8",
	}
	if got := e.Map(); !mapsEqual(got, want) {
		t.Errorf("pre: %v\nwant %v", got, want)
	}
	e.Hook = Post
	want["CAIRN_HOOK"], want["CAIRN_RESULT"], want["CAIRN_POINT"] = "post", "success", "web01@20261121T020002Z"
	if got := e.Map(); !mapsEqual(got, want) {
		t.Errorf("post: %v\nwant %v", got, want)
	}
	e.Result, e.Point = Skipped, ""
	want["CAIRN_RESULT"] = "skipped"
	delete(want, "CAIRN_POINT")
	if got := e.Map(); !mapsEqual(got, want) {
		t.Errorf("post without a point: %v\nwant %v", got, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
