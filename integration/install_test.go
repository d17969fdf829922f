package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall installs into a DESTDIR and checks what lands there:
// the binary, the unit (ExecStart naming the installed binary; checked
// by systemd-analyze verify) and the man page (read by man).
func TestMakeInstall(t *testing.T) {
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
