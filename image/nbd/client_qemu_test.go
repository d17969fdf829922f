package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/image/nbd/nbdtest"
)

// writeSparse writes e to a new raw file, leaving its holes as holes.
func writeSparse(t testing.TB, path string, e *testExport) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(e.size); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.runs {
		if _, err := f.WriteAt(r.b, r.off); err != nil {
			t.Fatal(err)
		}
	}
}

// startQemuNBD runs qemu-nbd with args serving on a new unix socket,
// waits until it accepts, and returns the socket and the process (killed
// when the test ends).
func startQemuNBD(t testing.TB, args ...string) (string, *exec.Cmd) {
	t.Helper()
	nbdtest.NeedTool(t, "qemu-nbd")
	sock := filepath.Join(t.TempDir(), "qemu-nbd.sock")
	var out bytes.Buffer
	cmd := exec.Command("qemu-nbd", append([]string{"-k", sock, "-t", "-e", "8"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		// The socket file appears before qemu-nbd listens on it.
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock, cmd
		}
		select {
		case <-exited:
			t.Fatalf("qemu-nbd %q exited: %s", args, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-nbd %q did not listen", args)
		}
	}
}

// dataRuns walks c with NextData.
func dataRuns(t testing.TB, c *Client) [][2]int64 {
	t.Helper()
	var runs [][2]int64
	for off := int64(0); off < c.Size(); {
		s, e, err := c.NextData(off)
		if err != nil {
			t.Fatal(err)
		}
		if s >= c.Size() {
			break
		}
		runs = append(runs, [2]int64{s, e})
		off = e
	}
	return runs
}

// The client reads raw and qcow2 images that qemu-nbd serves: bytes,
// allocation, concurrent and unaligned reads.
func TestClientAgainstQemuNBD(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-nbd", "qemu-img")
	// 64 KiB-aligned runs: qcow2 allocates whole clusters.
	exp := newTestExport(32<<20, 7,
		[2]int64{0, 128 << 10},
		[2]int64{2 << 20, 1 << 20},
		[2]int64{5<<20 + 64<<10, 64 << 10},
		[2]int64{20 << 20, 5 << 20},
		[2]int64{32<<20 - 64<<10, 64 << 10},
	)
	want := exp.bytes()
	var wantRuns [][2]int64
	for _, r := range exp.runs {
		wantRuns = append(wantRuns, [2]int64{r.off, r.end()})
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	writeSparse(t, raw, exp)
	qcow := filepath.Join(dir, "disk.qcow2")
	nbdtest.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	for _, img := range []struct{ format, path string }{{"raw", raw}, {"qcow2", qcow}} {
		t.Run(img.format, func(t *testing.T) {
			sock, _ := startQemuNBD(t, "-r", "-f", img.format, "-x", "disk", img.path)
			c := dial(t, sock, "disk", ClientOptions{MetaContexts: []string{ContextAllocation}})
			if c.Size() != exp.size || c.Flags()&FlagReadOnly == 0 || !c.Structured() {
				t.Fatalf("size %d flags %#x structured %v", c.Size(), c.Flags(), c.Structured())
			}
			got := make([]byte, exp.size)
			if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("whole read: %v, differs at %d", err, firstDiff(got, want))
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Go(func() {
					rng := mrand.New(mrand.NewSource(int64(g)))
					for range 30 {
						off := rng.Int63n(exp.size)
						n := min(rng.Int63n(300<<10)+1, exp.size-off)
						b := make([]byte, n)
						if _, err := c.ReadAt(b, off); err != nil || !bytes.Equal(b, want[off:off+n]) {
							errs <- fmt.Errorf("ReadAt(%d, %d): %v", off, n, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if !c.HasMetaContext(ContextAllocation) {
				t.Fatal("qemu-nbd did not grant base:allocation")
			}
			if runs := dataRuns(t, c); !reflect.DeepEqual(runs, wantRuns) {
				t.Errorf("data runs from base:allocation\n got %v\nwant %v", runs, wantRuns)
			}
		})
	}
}

// qemuBitmapImage makes a qcow2 image of size, serves it with
// qemu-storage-daemon, adds the persistent dirty bitmap b0, writes the
// given (off, len, byte) ranges through a writable NBD export while b0
// records them, and then exports the image read-only as "ro" with b0.
// It returns the daemon, the NBD socket and the image's path.
func qemuBitmapImage(t *testing.T, size int64, writes []patternRun) (*nbdtest.StorageDaemon, string, string) {
	nbdtest.NeedTool(t, "qemu-img", "qemu-io", "qemu-storage-daemon")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.qcow2")
	nbdtest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", img, fmt.Sprint(size))
	sock := filepath.Join(dir, "nbd.sock")
	d := nbdtest.StartStorageDaemon(t, dir,
		"--blockdev", "driver=file,node-name=file0,filename="+img,
		"--blockdev", "driver=qcow2,node-name=fmt0,file=file0",
		"--nbd-server", "addr.type=unix,addr.path="+sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qmp := func(cmd string, args map[string]any) {
		t.Helper()
		if err := d.Execute(ctx, cmd, args, nil); err != nil {
			t.Fatalf("%v\n%s", err, d.Stderr())
		}
	}
	qmp("block-dirty-bitmap-add", map[string]any{"node": "fmt0", "name": "b0", "persistent": true, "granularity": 65536})
	qmp("block-export-add", map[string]any{"type": "nbd", "id": "w", "node-name": "fmt0", "name": "w", "writable": true})
	args := []string{"-f", "raw", UnixURI(sock, "w")}
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("write -P %d %d %d", w.b, w.off, w.n))
	}
	nbdtest.Run(t, "qemu-io", args...)
	qmp("block-export-del", map[string]any{"id": "w"})
	// qemu exports a bitmap read-only only once it stops recording.
	qmp("block-dirty-bitmap-disable", map[string]any{"node": "fmt0", "name": "b0"})
	qmp("block-export-add", map[string]any{"type": "nbd", "id": "r", "node-name": "fmt0", "name": "ro", "writable": false, "bitmaps": []string{"b0"}})
	return d, sock, img
}

// The client reads qemu:dirty-bitmap:b0 from qemu-storage-daemon: the
// dirty extents are exactly the clusters written while b0 recorded.
func TestClientDirtyBitmap(t *testing.T) {
	writes := []patternRun{
		{1 << 20, 64 << 10, 0x5a},
		{10 << 20, 192 << 10, 0x5b},
		{40<<20 + 8192, 4096, 0x5c}, // dirties its whole 64 KiB cluster
		{63 << 20, 1 << 20, 0x5d},
	}
	d, sock, img := qemuBitmapImage(t, 64<<20, writes)
	bitmap := ContextDirtyBitmapPrefix + "b0"
	missing := ContextDirtyBitmapPrefix + "nosuch"
	c := dial(t, sock, "ro", ClientOptions{MetaContexts: []string{ContextAllocation, bitmap, missing}})
	if !c.HasMetaContext(bitmap) || !c.HasMetaContext(ContextAllocation) {
		t.Fatalf("contexts not granted: %v", c.contexts)
	}
	if c.HasMetaContext(missing) {
		t.Error("a bitmap the image lacks was granted")
	}
	exts, err := c.Extents(context.Background(), bitmap, 0, c.Size())
	if err != nil {
		t.Fatal(err)
	}
	var dirty []Extent
	for _, e := range exts {
		if e.Flags&StateDirty != 0 {
			dirty = append(dirty, Extent{Off: e.Off, Len: e.Len, Flags: e.Flags})
		}
	}
	wantDirty := []Extent{
		{Off: 1 << 20, Len: 64 << 10, Flags: StateDirty},
		{Off: 10 << 20, Len: 192 << 10, Flags: StateDirty},
		{Off: 40 << 20, Len: 64 << 10, Flags: StateDirty},
		{Off: 63 << 20, Len: 1 << 20, Flags: StateDirty},
	}
	if !reflect.DeepEqual(dirty, wantDirty) {
		t.Errorf("dirty extents\n got %v\nwant %v", dirty, wantDirty)
	}
	// The extents tile the disk.
	if pos := int64(0); len(exts) > 0 {
		for _, e := range exts {
			if e.Off != pos {
				t.Fatalf("extent %v does not start at %d", e, pos)
			}
			pos = e.End()
		}
		if pos != c.Size() {
			t.Errorf("extents end at %d of %d", pos, c.Size())
		}
	}
	for _, w := range writes {
		b := make([]byte, w.n)
		if _, err := c.ReadAt(b, w.off); err != nil || !bytes.Equal(b, bytes.Repeat([]byte{w.b}, int(w.n))) {
			t.Errorf("data written at %d: %v", w.off, err)
		}
	}
	if _, err := c.Extents(context.Background(), missing, 0, c.Size()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("extents of a missing bitmap: %v, want ErrUnsupported", err)
	}
	// The bitmap is persistent: it is in the image once the daemon quits.
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Execute(ctx, "quit", nil, nil)
	waitGone(t, d)
	var info struct {
		Format struct {
			Data struct {
				Bitmaps []struct{ Name string } `json:"bitmaps"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	out := nbdtest.Run(t, "qemu-img", "info", "--output=json", "-U", img)
	if err := json.Unmarshal(out, &info); err != nil || len(info.Format.Data.Bitmaps) != 1 || info.Format.Data.Bitmaps[0].Name != "b0" {
		t.Errorf("bitmaps in the image after quit: %v\n%s", err, out)
	}
}

// waitGone waits for the daemon to exit after quit.
func waitGone(t testing.TB, d *nbdtest.StorageDaemon) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !d.Exited(); {
		if time.Now().After(deadline) {
			t.Fatal("qemu-storage-daemon did not quit")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server killed in the middle of reads fails them with
// ErrDisconnected: no hang, no wrong bytes; later reads fail at once.
func TestClientServerKilled(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-nbd")
	exp := newTestExport(16<<20, 9, [2]int64{0, 16 << 20})
	want := exp.bytes()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	writeSparse(t, raw, exp)
	sock, cmd := startQemuNBD(t, "-r", "-f", "raw", "-x", "disk", raw)
	c := dial(t, sock, "disk", ClientOptions{})
	var wg sync.WaitGroup
	var reads sync.WaitGroup
	reads.Add(4)
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			rng := mrand.New(mrand.NewSource(int64(g)))
			for i := 0; ; i++ {
				if i == 3 {
					reads.Done()
				}
				off := rng.Int63n(exp.size - 1<<20)
				b := make([]byte, 1<<20)
				if _, err := c.ReadAt(b, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(b, want[off:off+int64(len(b))]) {
					errs <- fmt.Errorf("wrong bytes at %d", off)
					return
				}
			}
		})
	}
	reads.Wait()
	cmd.Process.Kill()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("reads hang after the server died")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrDisconnected) {
			t.Errorf("read when the server died: %v, want ErrDisconnected", err)
		}
	}
	if _, err := c.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrDisconnected) {
		t.Errorf("read after the server died: %v", err)
	}
}

// The client speaks TLS to qemu-nbd, which requires it and checks the
// client's certificate.
func TestClientTLSAgainstQemuNBD(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-nbd")
	certs := makeCerts(t)
	exp := newTestExport(1<<20, 11, [2]int64{0, 64 << 10}, [2]int64{512 << 10, 64 << 10})
	raw := filepath.Join(t.TempDir(), "disk.raw")
	writeSparse(t, raw, exp)
	dir := certs.writeQemuDir(t, "server")
	sock, _ := startQemuNBD(t, "--object", "tls-creds-x509,id=tls0,endpoint=server,verify-peer=on,dir="+dir,
		"--tls-creds", "tls0", "-r", "-f", "raw", "-x", "disk", raw)
	c := dial(t, sock, "disk", ClientOptions{TLSConfig: certs.client(), MetaContexts: []string{ContextAllocation}})
	got := make([]byte, exp.size)
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, exp.bytes()) {
		t.Fatalf("read over TLS: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Dial(ctx, UnixURI(sock, "disk"), ClientOptions{}); !errors.Is(err, ErrTLSRequired) {
		t.Errorf("plain client of qemu-nbd with TLS: %v, want ErrTLSRequired", err)
	}
}
