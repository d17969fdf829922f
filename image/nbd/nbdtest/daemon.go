package nbdtest

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// StorageDaemon is a qemu-storage-daemon run for one test, driven over
// QMP.
type StorageDaemon struct {
	*QMP
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
}

// StartStorageDaemon starts qemu-storage-daemon with a QMP socket in
// dir and the extra arguments args (--blockdev, --nbd-server, --export
// ...), waits until QMP answers, and stops the daemon when the test
// ends. It fails the test if the daemon does not come up.
func StartStorageDaemon(t testing.TB, dir string, args ...string) *StorageDaemon {
	t.Helper()
	NeedTool(t, "qemu-storage-daemon")
	sock := filepath.Join(dir, "qmp.sock")
	all := append([]string{"--chardev", "socket,id=qmp0,path=" + sock + ",server=on,wait=off",
		"--monitor", "chardev=qmp0"}, args...)
	d := &StorageDaemon{cmd: exec.Command("qemu-storage-daemon", all...), stderr: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.stderr, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("qemu-storage-daemon: %v", err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(d.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		select {
		case <-d.done:
			cancel() // it died: stop waiting for its socket
		case <-ctx.Done():
		}
	}()
	q, err := DialQMP(ctx, sock)
	if err != nil {
		t.Fatalf("qemu-storage-daemon %q did not come up: %v\n%s", args, err, d.stderr.String())
	}
	d.QMP = q
	return d
}

// Stderr is what the daemon has printed so far.
func (d *StorageDaemon) Stderr() string { return d.stderr.String() }

// Kill kills the daemon at once (SIGKILL), as a crash would.
func (d *StorageDaemon) Kill() {
	d.cmd.Process.Kill()
	<-d.done
}

// stop asks the daemon to quit, and kills it if it does not.
func (d *StorageDaemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	if d.QMP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.Execute(ctx, "quit", nil, nil)
		cancel()
		d.QMP.Close()
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.Kill()
	}
}

// lockedBuffer is a bytes.Buffer safe for a process's output and a
// test's reads at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Exited reports whether the daemon has exited.
func (d *StorageDaemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}
