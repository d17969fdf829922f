package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mounted is a running `cairn mount` (or daemon) process.
type mounted struct {
	cmd  *exec.Cmd
	dir  string
	log  *lockedBuffer
	done chan error
}

// startMount runs `cairn mount` on vault at a new directory and waits
// until the mount answers. Cleanup stops it and checks nothing is left.
func startMount(t *testing.T, vault string, extra ...string) *mounted {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	return startServing(t, vault, dir, append([]string{"mount", dir}, extra...)...)
}

// startServing runs cairn with args (mount or daemon --mount) on vault
// and waits until it serves a mount at dir.
func startServing(t *testing.T, vault, dir string, args ...string) *mounted {
	t.Helper()
	needFUSE(t)
	m := &mounted{cmd: exec.Command(cairnBin, args...), dir: dir, log: &lockedBuffer{}, done: make(chan error, 1)}
	m.cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	// "serving" follows the mount: a dead mount left at dir is no sign.
	for !isMounted(dir) || !strings.Contains(m.log.String(), "serving ") {
		select {
		case err := <-m.done:
			t.Fatalf("cairn mount exited: %v\n%s", err, m.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount did not come up:\n%s", m.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		if m.cmd.ProcessState == nil {
			m.stop(t)
		}
		if isMounted(dir) {
			exec.Command("umount", "-l", dir).Run()
			t.Errorf("mount left behind at %s", dir)
		}
	})
	return m
}

// stop sends SIGTERM and waits for a clean exit.
func (m *mounted) stop(t *testing.T) {
	t.Helper()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		if err != nil {
			t.Errorf("cairn mount exited with %v after SIGTERM:\n%s", err, m.log)
		}
	case <-time.After(15 * time.Second):
		m.cmd.Process.Kill()
		t.Fatalf("cairn mount did not stop after SIGTERM:\n%s", m.log)
	}
}

func isMounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func needFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE tests need root and /dev/fuse: %v", err)
		}
		t.Skip("FUSE tests need root and /dev/fuse")
	}
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestMountServesEveryPoint checks the mount end to end: every disk of
// several points is byte-identical to its source, holes are reported,
// parallel readers agree, writes fail with EROFS, a backup through the
// daemon appears live, a deleted point vanishes while an open file of it
// keeps reading, and SIGTERM unmounts cleanly.
func TestMountServesEveryPoint(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	needTool(t, "mkfs.ext4", "debugfs", "cmp", "cp", "qemu-img")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "128M", 40<<20)
	v1 := filepath.Join(dir, "v1.img")
	copyFile(t, img, v1)
	data := createSized(t, filepath.Join(dir, "data.raw"), 48<<20)
	scribble(t, data, 5, 6, 300<<10, 0, 48<<20)
	mustCairn(t, vault, "init")
	p1 := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web01", "vda="+img, "vdb="+data))
	scribble(t, img, 6, 3, 1<<20, 8<<20, 100<<20)
	v2 := filepath.Join(dir, "v2.img")
	copyFile(t, img, v2)
	p2 := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web01", "vda="+img, "vdb="+data))

	m := startMount(t, vault)
	id1, id2 := strings.TrimPrefix(p1, "web01@"), strings.TrimPrefix(p2, "web01@")
	res := filepath.Join(m.dir, "web01")
	if l, err := os.Readlink(filepath.Join(res, "latest")); err != nil || l != id2 {
		t.Fatalf("latest -> %q, %v; want %s", l, err, id2)
	}
	sameFile(t, v1, filepath.Join(res, id1, "vda.raw"))
	sameFile(t, v2, filepath.Join(res, id2, "vda.raw"))
	sameFile(t, data, filepath.Join(res, id1, "vdb.raw"))
	sameFile(t, data, filepath.Join(res, "latest", "vdb.raw"))

	t.Run("stat", func(t *testing.T) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(res, id1, "vdb.raw"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != 48<<20 || st.Mode&0o777 != 0o400 {
			t.Errorf("size %d mode %o", st.Size, st.Mode)
		}
		if st.Blocks*512 > 8<<20 || st.Blocks == 0 {
			t.Errorf("blocks %d: want about the allocated bytes", st.Blocks)
		}
		out := sh(t, "qemu-img", "info", "--output=json", filepath.Join(res, id1, "vda.raw"))
		if !strings.Contains(out, `"virtual-size": 134217728`) {
			t.Errorf("qemu-img info: %s", out)
		}
	})

	t.Run("sparse copy", func(t *testing.T) {
		cp := filepath.Join(dir, "sparse.img")
		sh(t, "cp", "--sparse=always", filepath.Join(res, id1, "vdb.raw"), cp)
		sameFile(t, data, cp)
		if a := allocated(t, cp); a > 4<<20 {
			t.Errorf("sparse copy allocates %d bytes", a)
		}
		// SEEK_HOLE/SEEK_DATA answered by the mount itself.
		f, err := os.Open(filepath.Join(res, id1, "vdb.raw"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		hole, err := f.Seek(0, 4) // SEEK_HOLE
		if err != nil || hole >= 48<<20 {
			t.Errorf("SEEK_HOLE = %d, %v", hole, err)
		}
		if d, err := f.Seek(hole, 3); err != nil || d <= hole { // SEEK_DATA
			t.Errorf("SEEK_DATA after %d = %d, %v", hole, d, err)
		}
	})

	t.Run("parallel readers", func(t *testing.T) {
		want, _ := os.ReadFile(v2)
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(seed int64) {
				defer wg.Done()
				f, err := os.Open(filepath.Join(res, id2, "vda.raw"))
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				r := rand.New(rand.NewSource(seed))
				buf := make([]byte, 64<<10)
				for i := 0; i < 200; i++ {
					off := r.Int63n(int64(len(want) - len(buf)))
					n := 4096 + r.Intn(len(buf)-4096)
					if _, err := f.ReadAt(buf[:n], off); err != nil {
						t.Error(err)
						return
					}
					if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
						t.Errorf("reader %d: bytes differ at %d", seed, off)
						return
					}
				}
			}(int64(g))
		}
		wg.Wait()
	})

	t.Run("read-only", func(t *testing.T) {
		file := filepath.Join(res, id1, "vda.raw")
		checks := map[string]error{
			"open for write": func() error { f, err := os.OpenFile(file, os.O_WRONLY, 0); f.Close(); return err }(),
			"create":         func() error { _, err := os.Create(filepath.Join(res, id1, "new")); return err }(),
			"mkdir":          os.Mkdir(filepath.Join(res, "newdir"), 0o755),
			"rm":             os.Remove(file),
			"rmdir":          os.Remove(filepath.Join(res, id1)),
			"rename":         os.Rename(file, filepath.Join(res, id1, "x.raw")),
			"chmod":          os.Chmod(file, 0o666),
			"truncate":       os.Truncate(file, 0),
			"symlink":        os.Symlink("x", filepath.Join(res, "lnk")),
			"setxattr":       syscall.Setxattr(file, "user.x", []byte("1"), 0),
		}
		for what, err := range checks {
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", what, err)
			}
		}
	})

	t.Run("live backup and delete", func(t *testing.T) {
		// Hold a file of point 1 open across its deletion.
		f, err := os.Open(filepath.Join(res, id1, "vda.raw"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// The daemon owns the vault: this backup runs through its socket.
		time.Sleep(time.Second) // a new second, a new ID
		r := cairn(t, vault, "backup", "--name", "web01", "vda="+v1)
		if r.code != 0 {
			t.Fatalf("backup through the daemon: %d %s", r.code, r.stderr)
		}
		p3 := strings.TrimSpace(r.stdout)
		id3 := strings.TrimPrefix(p3, "web01@")
		start := time.Now()
		if !waitFor(2*time.Second, func() bool {
			l, _ := os.Readlink(filepath.Join(res, "latest"))
			_, err := os.Stat(filepath.Join(res, id3, "vda.raw"))
			return l == id3 && err == nil
		}) {
			t.Fatalf("new point %s did not appear in the mount", p3)
		}
		t.Logf("new point visible after %v", time.Since(start))
		sameFile(t, v1, filepath.Join(res, id3, "vda.raw"))

		mustCairn(t, vault, "delete", p1)
		if !waitFor(2*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(res, id1))
			return errors.Is(err, os.ErrNotExist)
		}) {
			t.Errorf("deleted point %s still visible", p1)
		}
		got, err := io.ReadAll(f)
		if err != nil {
			t.Fatalf("reading an open file of a deleted point: %v", err)
		}
		want, _ := os.ReadFile(v1)
		if !bytes.Equal(got, want) {
			t.Error("open file of a deleted point reads wrong bytes")
		}
	})

	t.Run("commands through the daemon", func(t *testing.T) {
		var pts []pointJSON
		mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
		if len(pts) != 2 {
			t.Errorf("points through daemon: %d", len(pts))
		}
		r := cairn(t, vault, "show", "web01@nope")
		if r.code != 1 || !strings.Contains(r.stderr, "no such point") {
			t.Errorf("error through daemon: %d %q", r.code, r.stderr)
		}
		r = cairn(t, vault, "points", "--bogus")
		if r.code != 2 {
			t.Errorf("usage error through daemon: exit %d", r.code)
		}
		out := filepath.Join(dir, "through.img")
		mustCairn(t, vault, "restore", p2, "--disk", "vdb", out)
		sameFile(t, data, out)
		mustCairn(t, vault, "verify")
		// A second mount of the same vault is refused clearly.
		r = cairn(t, vault, "mount", filepath.Join(dir))
		if r.code == 0 || !strings.Contains(r.stderr, "owns this vault") {
			t.Errorf("second mount: %d %q", r.code, r.stderr)
		}
		// Another vault cannot mount over a busy mount point.
		other := filepath.Join(dir, "other-vault")
		mustCairn(t, other, "init")
		r = cairn(t, other, "mount", m.dir)
		if r.code != 1 || !strings.Contains(r.stderr, "already mounted") {
			t.Errorf("mount over a mounted directory: %d %q", r.code, r.stderr)
		}
		if fi, err := os.Stat(filepath.Join(vault, "cairn.sock")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket: %v %v", fi, err)
		}
	})

	m.stop(t)
	if isMounted(m.dir) {
		t.Fatal("mount still there after SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(vault, "cairn.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
	mustCairn(t, vault, "verify", "--data") // runs locally again
}

// TestMountAfterKill: a cairn killed with SIGKILL leaves a dead FUSE
// mount behind. The next mount or daemon --mount there removes it, says
// so and serves; a live one is still refused; cairn umount removes a
// dead one too.
func TestMountAfterKill(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := createSized(t, filepath.Join(dir, "d.raw"), 1<<20)
	scribble(t, disk, 4, 4, 10<<10, 0, 1<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	id := strings.TrimPrefix(strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "r", disk)), "r@")
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	kill := func(m *mounted) {
		t.Helper()
		// Just looked at, the mount's attributes stay in the kernel's
		// cache for a while: stat alone would take it for a live one.
		os.ReadDir(mnt)
		m.cmd.Process.Kill()
		<-m.done
		if !isMounted(mnt) {
			t.Fatal("no dead mount left after SIGKILL")
		}
	}
	kill(startServing(t, vault, mnt, "mount", mnt))
	for _, args := range [][]string{{"mount", mnt}, {"daemon", "--mount", mnt}} {
		m := startServing(t, vault, mnt, args...)
		if n := strings.Count(m.log.String(), "removed the dead mount"); n != 1 {
			t.Errorf("cairn %s: %d lines on the dead mount it replaced, want 1:\n%s", strings.Join(args, " "), n, m.log)
		}
		sameFile(t, disk, filepath.Join(mnt, "r", id, "d.raw"))
		if args[0] == "mount" {
			other := filepath.Join(dir, "other")
			mustCairn(t, other, "init")
			r := cairn(t, other, "mount", mnt)
			if r.code != 1 || !strings.Contains(r.stderr, "already mounted by a running cairn (cairn:"+vault+")") {
				t.Errorf("mount over a live cairn mount: exit %d %q", r.code, r.stderr)
			}
		}
		kill(m)
	}
	mustCairn(t, vault, "umount", mnt)
	if isMounted(mnt) {
		t.Error("cairn umount left the dead mount")
	}
}

// TestMountDamagedPackIsEIO damages a stored block and checks the mount
// answers EIO for it, logs it, keeps serving the rest, and never returns
// wrong bytes.
func TestMountDamagedPackIsEIO(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := createSized(t, filepath.Join(dir, "d.raw"), 8<<20)
	scribble(t, disk, 9, 1, 8<<20-1, 0, 8<<20)
	mustCairn(t, vault, "init", "--compression", "none")
	p := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "r", disk))
	packs, _ := filepath.Glob(filepath.Join(vault, "packs", "*", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs: %v", packs)
	}
	// Without compression, disk offset X sits near pack offset X: flip
	// bytes in the middle of the pack.
	f, _ := os.OpenFile(packs[0], os.O_RDWR, 0)
	f.WriteAt([]byte("DAMAGE"), 4<<20)
	f.Close()

	m := startMount(t, vault)
	file := filepath.Join(m.dir, "r", strings.TrimPrefix(p, "r@"), "d.raw")
	_, err := os.ReadFile(file)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading a damaged disk: %v, want EIO", err)
	}
	want, _ := os.ReadFile(disk)
	g, _ := os.Open(file)
	defer g.Close()
	buf := make([]byte, 64<<10)
	if _, err := g.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, want[:len(buf)]) {
		t.Errorf("undamaged start of the disk: %v", err)
	}
	m.stop(t)
	if !strings.Contains(m.log.String(), "damaged") {
		t.Errorf("damage not logged:\n%s", m.log)
	}
}

// TestDaemonSocket covers the daemon without a mount: stale sockets are
// cleared, Ctrl-C cancels the job in the daemon, a second daemon is
// refused.
func TestDaemonSocket(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "256M", 120<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K")

	start := func() (*exec.Cmd, *lockedBuffer, chan error) {
		cmd := exec.Command(cairnBin, "daemon")
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		log := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if !waitFor(10*time.Second, func() bool { return strings.Contains(log.String(), "serving") }) {
			t.Fatalf("daemon did not start:\n%s", log)
		}
		return cmd, log, done
	}
	d, log, done := start()
	r := cairn(t, vault, "daemon")
	if r.code == 0 || !strings.Contains(r.stderr, "owns this vault") {
		t.Errorf("second daemon: %d %q", r.code, r.stderr)
	}

	// Ctrl-C on a client cancels its backup inside the daemon.
	for _, sig := range []os.Signal{os.Interrupt} {
		c := exec.Command(cairnBin, "backup", "--name", "big", img)
		c.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		c.Start()
		time.Sleep(150 * time.Millisecond)
		c.Process.Signal(sig)
		err := c.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || stderr.String() != "cairn: interrupted\n" {
			t.Errorf("interrupted client: %v %q, want exit 130 and one line saying so", err, stderr.String())
		}
	}
	if !waitFor(5*time.Second, func() bool { return regexp.MustCompile(`job \S+ backup big canceled`).MatchString(log.String()) }) {
		t.Errorf("backup did not run, or was not canceled, in the daemon:\n%s", log)
	}
	var pts []pointJSON
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
	if len(pts) != 0 {
		t.Errorf("a cancelled backup committed a point: %+v", pts)
	}

	// kill -9 leaves a stale socket; the next command clears it and runs
	// locally, and the next daemon starts.
	d.Process.Kill()
	<-done
	if _, err := os.Stat(filepath.Join(vault, "cairn.sock")); err != nil {
		t.Fatalf("expected a stale socket after kill -9: %v", err)
	}
	mustCairn(t, vault, "verify")
	if _, err := os.Stat(filepath.Join(vault, "cairn.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale socket not removed: %v", err)
	}
	d, log, done = start()
	name := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "big", img))
	if !regexp.MustCompile(`job \S+ backup big succeeded`).MatchString(log.String()) {
		t.Errorf("backup did not go through the daemon:\n%s", log)
	}
	d.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("daemon exit after SIGTERM: %v\n%s", err, log)
	}
	out := filepath.Join(dir, "r.img")
	mustCairn(t, vault, "restore", name, out)
	sameFile(t, img, out)
	fmt.Fprint(io.Discard, log)
}

// TestMountHelp: the help of mount, daemon and umount says what the user
// sees and ends with examples.
func TestMountHelp(t *testing.T) {
	for cmd, words := range map[string][]string{
		"mount": {"RESOURCE/latest", "RESOURCE/ID/DISK.raw", "DISK/partN/", "DISK/partN.raw", "bare filesystem",
			"0400", "--allow-other", "--disk-group"},
		"daemon": {"socket", "CAIRN_SOCKET", "--mount", "SIGTERM"},
		"umount": {"dead mount"},
	} {
		r := cairn(t, t.TempDir(), cmd, "--help")
		desc, _, _ := strings.Cut(r.stdout, "OPTIONS:")
		if r.code != 0 || !strings.Contains(desc, "Examples:\n     cairn ") {
			t.Errorf("cairn %s --help: exit %d, no examples:\n%s", cmd, r.code, r.stdout)
		}
		for _, w := range words {
			if !strings.Contains(desc, w) {
				t.Errorf("cairn %s --help does not mention %q", cmd, w)
			}
		}
		if strings.Contains(r.stdout, "Badger") {
			t.Errorf("cairn %s --help speaks of Badger", cmd)
		}
	}
}
