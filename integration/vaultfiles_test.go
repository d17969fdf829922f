package integration

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestVaultFileModes checks that every file a vault holds is 0600 and
// every folder 0700, index files included, with a umask of 0: the vault
// holds every backed-up disk.
func TestVaultFileModes(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "32M", 2<<20)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{"-c", `umask 000; exec "$@"`, "sh", cairnBin}, args...)...)
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cairn %v: %v\n%s", args, err, out)
		}
	}
	run("init")
	run("backup", "--name", "a", img)
	scribble(t, img, 3, 4, 64<<10, 1<<20, 30<<20)
	run("backup", "--name", "a", img)
	run("verify", "--data")
	// A daemon's socket, and the index it writes while it runs.
	d := exec.Command(cairnBin, "daemon")
	d.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(vault, "cairn.sock")
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	run("backup", "--name", "b", img)
	checkModes(t, vault)
	d.Process.Signal(syscall.SIGTERM)
	d.Wait()
	checkModes(t, vault)
}

func checkModes(t *testing.T, vault string) {
	t.Helper()
	n := 0
	filepath.WalkDir(vault, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil // gone meanwhile (a compaction)
		}
		n++
		want := os.FileMode(0o600)
		if e.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", strings.TrimPrefix(p, vault), info.Mode().Perm(), want)
		}
		return nil
	})
	if n < 10 {
		t.Fatalf("only %d entries in the vault", n)
	}
}

// TestFullVaultFilesystem fills the vault's filesystem (a small tmpfs)
// to the last byte: every read-only command still works, a restore to
// another filesystem included, and a backup fails with one clear line
// and harms nothing.
func TestFullVaultFilesystem(t *testing.T) {
	needTool(t, "mkfs.ext4", "cmp")
	dir, small := t.TempDir(), smallFilesystem(t, "24m")
	vault := filepath.Join(small, "vault")
	img := makeExt4(t, dir, "32M", 4<<20)
	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "a", img))
	fill := filepath.Join(small, "fill")
	fillUp(t, fill)
	before := vaultState(t, vault)

	for _, args := range [][]string{
		{"points"}, {"points", "--json"}, {"show", point}, {"stats"}, {"verify"}, {"verify", "--data"},
		{"ls", point + ":disk"},
	} {
		if r := cairn(t, vault, args...); r.code != 0 {
			t.Errorf("cairn %v on a full vault filesystem: exit %d: %s", args, r.code, r.stderr)
		}
	}
	restored := filepath.Join(dir, "restored.img")
	mustCairn(t, vault, "restore", point, restored)
	sameFile(t, img, restored)
	exported := filepath.Join(dir, "exported.raw")
	mustCairn(t, vault, "export", point, "--format", "raw", "-o", exported)
	sameFile(t, img, exported)

	scribble(t, img, 9, 8, 1<<20, 1<<20, 30<<20)
	r := cairn(t, vault, "backup", "--name", "a", img)
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "full") {
		t.Errorf("backup to a full vault: exit %d, stderr %q", r.code, r.stderr)
	}
	if after := vaultState(t, vault); after != before {
		t.Errorf("a failed backup changed the vault:\nbefore %s\nafter %s", before, after)
	}
	// Once there is room again, backups work.
	os.Remove(fill)
	mustCairn(t, vault, "backup", "--name", "a", img)
	mustCairn(t, vault, "verify", "--data")
}

// smallFilesystem mounts a tmpfs of size for the test, to be filled: the
// vault's filesystem of the full-filesystem tests. It needs root.
func smallFilesystem(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs and needs root")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	return scratchTmpfs(t, size)
}

// fillUp writes the file path until its filesystem has no block left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 1<<20); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Sync()
	f.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil || st.Bavail != 0 {
		t.Fatalf("the filesystem of %s has %d blocks free (%v)", path, st.Bavail, err)
	}
}

// TestDaemonOnFullFilesystem starts a daemon on a vault whose filesystem
// is full: it serves reads, a backup through it fails with one line that
// says what to do, and once there is room a restarted daemon backs up.
func TestDaemonOnFullFilesystem(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir, small := t.TempDir(), smallFilesystem(t, "24m")
	t.Parallel()
	vault := filepath.Join(small, "vault")
	img := makeExt4(t, dir, "32M", 4<<20)
	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "a", img))
	fill := filepath.Join(small, "fill")
	fillUp(t, fill)

	d := startDaemon(t, vault)
	if !strings.Contains(d.log.String(), "open for reading only") {
		t.Errorf("the daemon does not say the vault is open for reading only:\n%s", d.log)
	}
	if out := mustCairn(t, vault, "points"); !strings.Contains(out, point) {
		t.Errorf("points through a daemon on a full filesystem: %s", out)
	}
	restored := filepath.Join(dir, "restored.img")
	mustCairn(t, vault, "restore", point, restored)
	sameFile(t, img, restored)
	os.Remove(fill)
	// Room again, but the daemon opened the vault for reading: a backup
	// says so, and what to do.
	r := cairn(t, vault, "backup", "--name", "a", img)
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "restart the daemon") {
		t.Errorf("backup through a read-only daemon: exit %d, stderr %q", r.code, r.stderr)
	}
	d.stop(t)
	startDaemon(t, vault)
	mustCairn(t, vault, "backup", "--name", "a", img)
	mustCairn(t, vault, "verify", "--data")
}

// TestVaultOfAnotherUser checks the hint a user gets for a vault that
// belongs to someone else: who owns it, and what to do.
func TestVaultOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test runs a command as another uid and needs root")
		}
		t.Skip("needs root to run a command as another uid")
	}
	dir := t.TempDir()
	// The other user may walk to the vault, not into it.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init")
	cmd := exec.Command(cairnBin, "points")
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") || !strings.Contains(string(out), "belongs to root") ||
		strings.Count(string(out), "\n") != 1 {
		t.Errorf("points as another user: %v, %q", err, out)
	}
}
