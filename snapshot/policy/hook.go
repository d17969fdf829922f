package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Hook running. See the package doc for the environment and the rules.
const (
	// HookGrace is how long a hook's process group has to exit after
	// SIGTERM before it gets SIGKILL.
	HookGrace = 5 * time.Second
	// hookOutputDelay is how long output is still read after a hook
	// exits, from processes it left running that hold its output open.
	hookOutputDelay = time.Second
	// hookPoll is how often a stopping process group is looked at.
	hookPoll = 10 * time.Millisecond
)

// ErrTimeout marks a hook that ran past its timeout.
var ErrTimeout = errors.New("timed out")

// RunHook runs argv as a hook and waits for it: no shell, the daemon's
// identity, in "/", with stdin from /dev/null, stdout and stderr to out
// (nil discards them), and exactly the environment env (nothing is
// inherited; env["PATH"] also finds a bare argv[0], as Validate does).
// The hook is the leader of a process group of its own. When timeout
// (none if <= 0) passes or ctx is done first, the whole group gets
// SIGTERM, and SIGKILL after HookGrace if any of it is still there;
// RunHook returns once the group is gone.
//
// The error says what happened, in one line: "hook X: exit status 3",
// "hook X: killed by SIGKILL" (a signal from elsewhere), "hook X: timed
// out after 1m; stopped with SIGTERM" (wrapping ErrTimeout), "hook X:
// canceled (context canceled); ..." (wrapping ctx.Err()), or why it did
// not start. A hook that exits leaving processes behind is not
// stopped (a pre hook may hold a lock that way until the post hook);
// what they write after it exits is no longer read.
func RunHook(ctx context.Context, argv []string, env map[string]string, timeout time.Duration, out io.Writer) error {
	return runHook(ctx, argv, env, timeout, HookGrace, out)
}

func runHook(ctx context.Context, argv []string, env map[string]string, timeout, grace time.Duration, out io.Writer) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("hook: no program given")
	}
	name := argv[0]
	path, err := lookPath(name, env["PATH"])
	if err != nil {
		return fmt.Errorf("hook %v", err)
	}
	environ, err := environList(env)
	if err != nil {
		return fmt.Errorf("hook %s: %v", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hook %s: not started: %w", name, err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        argv,
		Env:         environ,
		Dir:         "/",
		Stdout:      out,
		Stderr:      out,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   hookOutputDelay,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("hook %s: %v", name, pathCause(err))
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var why error
	select {
	case err := <-done:
		return exitResult(name, err, out)
	case <-expired:
		why = fmt.Errorf("hook %s: %w after %s", name, ErrTimeout, formatDuration(timeout))
	case <-ctx.Done():
		why = fmt.Errorf("hook %s: canceled (%w)", name, ctx.Err())
	}
	select {
	case err := <-done: // it ended as it ran out of time
		return exitResult(name, err, out)
	default:
	}
	return fmt.Errorf("%w; %s", why, stopGroup(pgid, grace, done))
}

// stopGroup ends process group pgid, whose leader's Wait reports on
// done: SIGTERM, then SIGKILL after grace. It says which it took.
func stopGroup(pgid int, grace time.Duration, done <-chan error) string {
	_ = unix.Kill(-pgid, unix.SIGTERM)
	tick := time.NewTicker(hookPoll)
	defer tick.Stop()
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	reaped := false
	for {
		select {
		case <-done:
			reaped = true
			done = nil
		case <-tick.C:
		case <-deadline.C:
			_ = unix.Kill(-pgid, unix.SIGKILL)
			if !reaped {
				<-done
			}
			// SIGKILL cannot be refused; give the kernel a moment to
			// finish the group's exits.
			for i := 0; i < 100 && groupAlive(pgid); i++ {
				<-tick.C
			}
			return fmt.Sprintf("killed with SIGKILL after %s (SIGTERM did not stop it)", formatDuration(grace))
		}
		if reaped && !groupAlive(pgid) {
			return "stopped with SIGTERM"
		}
	}
}

// groupAlive reports whether process group pgid has a member that is
// not a zombie. (Orphans that exited may stay zombies in the group for
// as long as whoever adopted them leaves them unreaped.)
func groupAlive(pgid int) bool {
	if err := unix.Kill(-pgid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pg, state, ok := procGroup(pid); ok && pg == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// procGroup reads the process group and state of pid from /proc.
func procGroup(pid int) (pgid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return pg, f[0][0], true
}

// exitResult turns the end of a hook that exited by itself into its
// error.
func exitResult(name string, err error, out io.Writer) error {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrWaitDelay):
		if out != nil {
			fmt.Fprintf(out, "cairn: hook %s exited leaving processes that hold its output open; what they write is not logged\n", name)
		}
		return nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &exitError{fmt.Sprintf("hook %s: killed by %s", name, signalName(ws.Signal())), ee}
		}
		return &exitError{fmt.Sprintf("hook %s: exit status %d", name, ee.ExitCode()), ee}
	}
	return fmt.Errorf("hook %s: %w", name, err)
}

// exitError is a hook that exited unsuccessfully; it wraps the
// *exec.ExitError.
type exitError struct {
	msg string
	err *exec.ExitError
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.err }

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return "signal " + strconv.Itoa(int(s))
}

// environList is env as exec wants it, sorted.
func environList(env map[string]string) ([]string, error) {
	out := make([]string, 0, len(env))
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("environment variable %q cannot be passed", k)
		}
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out, nil
}

// HookKind says which hook runs: CAIRN_HOOK.
type HookKind string

const (
	Pre  HookKind = "pre"
	Post HookKind = "post"
)

// HookEnv is what the runner tells a hook; Map gives the environment
// RunHook takes. See the package doc.
type HookEnv struct {
	Policy   string
	Resource string // the policy's name when empty
	Vault    string // the vault's directory
	Hook     HookKind
	Disks    []Source // with their disk names (SetDefaults)
	// Result and Point are for post hooks: how the run went, and the
	// point it made (RESOURCE@ID), if any.
	Result Result
	Point  string
	// Path, Home and Lang are the daemon's PATH, HOME and LANG; each is
	// passed when set.
	Path, Home, Lang string
}

// Map is the hook's environment.
func (e HookEnv) Map() map[string]string {
	res := e.Resource
	if res == "" {
		res = e.Policy
	}
	disks := make([]string, len(e.Disks))
	for i, d := range e.Disks {
		disks[i] = d.DiskName() + "=" + d.Path
	}
	m := map[string]string{
		"CAIRN_POLICY":   e.Policy,
		"CAIRN_RESOURCE": res,
		"CAIRN_VAULT":    e.Vault,
		"CAIRN_HOOK":     string(e.Hook),
		"CAIRN_DISKS":    strings.Join(disks, " "),
	}
	if e.Hook == Post {
		m["CAIRN_RESULT"] = string(e.Result)
		if e.Point != "" {
			m["CAIRN_POINT"] = e.Point
		}
	}
	for k, v := range map[string]string{"PATH": e.Path, "HOME": e.Home, "LANG": e.Lang} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}
