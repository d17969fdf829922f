package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// otherID is the uid and gid of a second local user. It needs no
// account: commands run with these credentials directly.
const otherID = 4242

// asOther runs a command as uid and gid otherID, without supplementary
// groups, and returns its stdout, stderr and error.
func asOther(t *testing.T, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherID, Gid: otherID}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// reachable lets every user walk down to path: t.TempDir's folders are
// 0700. The folders from path up to the temporary directory become 0755.
func reachable(t *testing.T, path string) {
	t.Helper()
	top := filepath.Clean(os.TempDir())
	for d := filepath.Clean(path); strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMountDiskPermissions: with --allow-other a second user reads guest
// files as their modes allow, but no disk file (DISK.raw, partN.raw),
// which would hand it every guest file; --disk-group and --disk-mode
// share disk files on purpose. Without --allow-other it sees nothing.
func TestMountDiskPermissions(t *testing.T) {
	needTool(t, "mkfs.ext4", "sgdisk", "dd", "cmp", "stat", "cat")
	needFUSE(t)
	dir := t.TempDir()
	reachable(t, dir)
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	if err := os.WriteFile(filepath.Join(tree, "public"), []byte("public\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "secret"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A GPT disk whose one partition holds the tree.
	part := filepath.Join(dir, "part.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", tree, part, "4M")
	disk := createSized(t, filepath.Join(dir, "vda.img"), 6<<20)
	sh(t, "sgdisk", "-n1:1M:+4M", disk)
	gtPlace(t, part, disk, 1<<20)
	os.Chmod(disk, 0o644)
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	mustCairn(t, vault, "backup", "--name", "web", "vda="+disk)

	start := func(extra ...string) (*mounted, string) {
		t.Helper()
		m := startMount(t, vault, extra...)
		reachable(t, filepath.Dir(m.dir))
		return m, filepath.Join(m.dir, "web", "latest")
	}
	// denied checks that the second user cannot read path.
	denied := func(path string) {
		t.Helper()
		_, stderr, err := asOther(t, nil, "dd", "if="+path, "of=/dev/null", "bs=64k", "count=1", "status=none")
		if err == nil || !strings.Contains(stderr, "Permission denied") {
			t.Errorf("uid %d reads %s: %v %q, want permission denied", otherID, path, err, stderr)
		}
	}
	// modes checks mode, owner and group of each path, as stat shows
	// them to the second user.
	modes := func(want map[string]string) {
		t.Helper()
		for path, w := range want {
			out, stderr, err := asOther(t, nil, "stat", "-c", "%a %u %g", path)
			if err != nil || strings.TrimSpace(out) != w {
				t.Errorf("stat %s: %q %v %s, want %q", path, out, err, stderr, w)
			}
		}
	}

	me := fmt.Sprintf("%d %d", os.Geteuid(), os.Getegid())
	m, _ := start()
	if _, stderr, err := asOther(t, nil, "ls", m.dir); err == nil || !strings.Contains(stderr, "Permission denied") {
		t.Errorf("uid %d lists a mount without --allow-other: %v %q", otherID, err, stderr)
	}
	m.stop(t)

	m, latest := start("--allow-other")
	if out, stderr, err := asOther(t, nil, "cat", filepath.Join(latest, "vda", "part1", "public")); err != nil || out != "public\n" {
		t.Errorf("uid %d reads a 0644 guest file: %q %v %s", otherID, out, err, stderr)
	}
	denied(filepath.Join(latest, "vda", "part1", "secret"))
	denied(filepath.Join(latest, "vda.raw"))
	denied(filepath.Join(latest, "vda", "part1.raw"))
	modes(map[string]string{
		filepath.Join(latest, "vda.raw"):                "400 " + me,
		filepath.Join(latest, "vda", "part1.raw"):       "400 " + me,
		filepath.Join(latest, "vda", "part1", "public"): "644 0 0", // as in the guest
		filepath.Join(latest, "vda", "part1", "secret"): "600 0 0",
	})
	m.stop(t)

	m, latest = start("--allow-other", "--disk-group", "4242", "--disk-mode", "0440")
	if _, stderr, err := asOther(t, nil, "cmp", filepath.Join(latest, "vda.raw"), disk); err != nil {
		t.Errorf("uid %d in --disk-group compares vda.raw with its source: %v %s", otherID, err, stderr)
	}
	denied(filepath.Join(latest, "vda", "part1", "secret"))
	modes(map[string]string{
		filepath.Join(latest, "vda.raw"):          fmt.Sprintf("440 %d 4242", os.Geteuid()),
		filepath.Join(latest, "vda", "part1.raw"): fmt.Sprintf("440 %d 4242", os.Geteuid()),
	})
	m.stop(t)
	m, latest = start("--allow-other", "--disk-group", "4242") // the group reads
	modes(map[string]string{filepath.Join(latest, "vda.raw"): fmt.Sprintf("440 %d 4242", os.Geteuid())})
	m.stop(t)

	for _, bad := range [][]string{{"--allow-other", "--disk-mode", "0644"}, {"--allow-other", "--disk-group", "no-such-group-here"}, {"--disk-mode", "0440"}} {
		r := cairn(t, vault, append([]string{"mount", filepath.Join(dir, "tree")}, bad...)...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "cairn: --disk-") {
			t.Errorf("mount %v: exit %d %q, want exit 2 and one line", bad, r.code, r.stderr)
		}
	}
}

// TestMountWithoutFUSEAccess: a user who may not open /dev/fuse is told
// so in one line, with what to do, instead of fusermount3's messages.
func TestMountWithoutFUSEAccess(t *testing.T) {
	needFUSE(t) // root, to set up the second user's files
	dir := t.TempDir()
	reachable(t, dir)
	bin := filepath.Join(dir, "cairn") // cairnBin's folder may be closed to others
	sh(t, "cp", cairnBin, bin)
	vault, mnt := filepath.Join(dir, "vault"), filepath.Join(dir, "mnt")
	for _, d := range []string{vault, mnt} {
		os.Mkdir(d, 0o755)
		if err := os.Chown(d, otherID, otherID); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"CAIRN_VAULT=" + vault}
	if _, stderr, err := asOther(t, env, bin, "init"); err != nil {
		t.Fatalf("init as uid %d: %v %s", otherID, err, stderr)
	}
	cmd, args := bin, []string{"mount", mnt}
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 == 0o006 {
		// Everyone may open /dev/fuse here: hide it, in a mount
		// namespace of this command only, behind a file only root reads.
		needTool(t, "unshare", "setpriv", "mount")
		fake := filepath.Join(dir, "no-fuse")
		if err := os.WriteFile(fake, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		script := `mount --bind "$0" /dev/fuse && exec setpriv --reuid=` + fmt.Sprint(otherID) +
			` --regid=` + fmt.Sprint(otherID) + ` --clear-groups "$@"`
		cmd, args = "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, fake, bin}, args...)
	}
	c := exec.Command(cmd, args...)
	c.Env = append(os.Environ(), env...)
	if cmd == bin {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherID, Gid: otherID}}
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	err := c.Run()
	if isMounted(mnt) {
		exec.Command("umount", "-l", mnt).Run()
	}
	want := "cairn: mount " + mnt + ": no access to /dev/fuse (permission denied): run as root, or install fuse3 and give this user access to /dev/fuse\n"
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || stderr.String() != want {
		t.Errorf("mount as uid %d without /dev/fuse: %v\n%s\nwant exit 1 and\n%s", otherID, err, stderr.String(), want)
	}
}
