package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeInstall installs into a DESTDIR and checks what lands there:
// the binary, the unit (ExecStart naming the installed binary; checked
// by systemd-analyze verify) and the man page (read by man).
func TestMakeInstall(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	needTool(t, "make", "systemd-analyze", "man")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("make", append([]string{"-C", root}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
	}
	run("install", "DESTDIR="+dest, "PREFIX=/usr")
	for path, mode := range map[string]os.FileMode{
		"usr/bin/cairn": 0o755, "usr/lib/systemd/system/cairn.service": 0o644, "usr/share/man/man1/cairn.1": 0o644,
	} {
		st, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Errorf("not installed: %s", path)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", path, st.Mode().Perm(), mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/cairn.service"))
	for _, want := range []string{"ExecStart=/usr/bin/cairn daemon", "Type=notify", "ConditionPathExists=/var/lib/cairn/cairn.json", "RestartPreventExitStatus=2"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if out := sh(t, filepath.Join(dest, "usr/bin/cairn"), "--version"); !strings.HasPrefix(out, "cairn ") {
		t.Errorf("installed cairn --version: %q", out)
	}
	man := exec.Command("man", "-l", filepath.Join(dest, "usr/share/man/man1/cairn.1"))
	man.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=100")
	if out, err := man.Output(); err != nil || !strings.Contains(string(out), "restore") || !strings.Contains(string(out), "backup") {
		t.Errorf("man page: %v\n%s", err, out)
	}

	// systemd-analyze verify needs the binary at the path the unit
	// names, so it checks an install under a prefix of its own.
	prefix := filepath.Join(t.TempDir(), "prefix")
	run("install", "PREFIX="+prefix)
	v := exec.Command("systemd-analyze", "verify", filepath.Join(prefix, "lib/systemd/system/cairn.service"))
	v.Env = append(os.Environ(), "MANPATH="+filepath.Join(prefix, "share/man"))
	if out, err := v.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDaemonNotifiesSystemd starts the daemon as systemd would start a
// Type=notify service: it says READY=1 once its socket answers, and
// STOPPING=1 on SIGTERM.
func TestDaemonNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init")
	addr := &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"}
	conn, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d := exec.Command(cairnBin, "daemon")
	d.Env = append(os.Environ(), "CAIRN_VAULT="+vault, "NOTIFY_SOCKET="+addr.Name)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Process.Kill()
	read := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification from the daemon: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// Ready means ready: a command runs through it at once.
	if _, err := net.Dial("unix", filepath.Join(vault, "cairn.sock")); err != nil {
		t.Fatalf("READY=1 before the socket answers: %v", err)
	}
	d.Process.Signal(syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("notification on SIGTERM %q, want STOPPING=1", got)
	}
	d.Wait()
}
