package integration

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runningDaemon is a `cairn daemon` process serving a vault.
type runningDaemon struct {
	cmd  *exec.Cmd
	sock string
	log  *lockedBuffer
	done chan error
}

// startDaemon runs `cairn daemon` on vault with extra flags and waits
// until it serves. Cleanup stops it with SIGTERM and checks it exits
// cleanly.
func startDaemon(t *testing.T, vault string, extra ...string) *runningDaemon {
	t.Helper()
	d := &runningDaemon{cmd: exec.Command(cairnBin, append([]string{"daemon"}, extra...)...), log: &lockedBuffer{},
		done: make(chan error, 1), sock: filepath.Join(vault, "cairn.sock")}
	for i, a := range extra {
		if a == "--socket" && i+1 < len(extra) {
			d.sock = extra[i+1]
		}
	}
	d.cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	if !waitFor(10*time.Second, func() bool { return strings.Contains(d.log.String(), "serving ") }) {
		t.Fatalf("daemon did not start:\n%s", d.log)
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop sends SIGTERM and waits for a clean exit; a second stop does
// nothing.
func (d *runningDaemon) stop(t *testing.T) {
	t.Helper()
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon exited with %v after SIGTERM:\n%s", err, d.log)
		}
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		t.Errorf("daemon did not stop after SIGTERM:\n%s", d.log)
	}
}

var shared struct {
	once sync.Once
	dir  string
	err  error
	mu   sync.Mutex
	imgs map[int64]string
}

func removeShared() {
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// bigImage returns a disk image of size bytes whose every 64 KiB block
// is distinct and incompressible, made once per seed for the whole test
// run: a backup of it takes long enough to be interrupted.
func bigImage(t testing.TB, seed, size int64) string {
	t.Helper()
	shared.once.Do(func() { shared.dir, shared.err = os.MkdirTemp("", "cairn-test-images") })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if p, ok := shared.imgs[seed]; ok {
		return p
	}
	p := filepath.Join(shared.dir, fmt.Sprintf("big-%d.img", seed))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	rand.New(rand.NewSource(seed)).Read(buf)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for b := 0; b < len(buf); b += 64 << 10 {
			binary.LittleEndian.PutUint64(buf[b:], uint64(off)+uint64(b)) // each block its own
			binary.LittleEndian.PutUint64(buf[b+8:], uint64(seed))
		}
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if shared.imgs == nil {
		shared.imgs = map[int64]string{}
	}
	shared.imgs[seed] = p
	return p
}
