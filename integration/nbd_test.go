package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand"
	"net"
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

// nbdView is what cairn nbd --json prints.
type nbdView struct {
	Job     string `json:"job"`
	Point   string `json:"point"`
	Disk    string `json:"disk"`
	Export  string `json:"export"`
	URI     string `json:"uri"`
	Socket  string `json:"socket"`
	Address string `json:"address"`
	TLS     bool   `json:"tls"`
	Size    int64  `json:"size"`
}

// nbdServer is a `cairn nbd` serving in the foreground.
type nbdServer struct {
	nbdView
	cmd  *exec.Cmd
	log  *lockedBuffer // stderr
	done chan error
}

// startNBD runs `cairn nbd POINT --json ARGS...` in the foreground and
// waits for the view it prints once it listens. Cleanup kills it if the
// test did not stop it.
func startNBD(t *testing.T, vault, point string, args ...string) *nbdServer {
	t.Helper()
	s := &nbdServer{cmd: exec.Command(cairnBin, append([]string{"nbd", point, "--json"}, args...)...),
		log: &lockedBuffer{}, done: make(chan error, 1)}
	s.cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	s.cmd.Stderr = s.log
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		got <- json.NewDecoder(out).Decode(&s.nbdView)
		io.Copy(io.Discard, out)
		s.done <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case err := <-got:
		if err != nil {
			s.cmd.Process.Kill()
			t.Fatalf("cairn nbd %s printed no view (%v):\n%s", point, err, s.log)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("cairn nbd %s did not start:\n%s", point, s.log)
	}
	return s
}

// stop sends SIGTERM: the server exits 0 and its socket goes.
func (s *nbdServer) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("cairn nbd exited with %v after SIGTERM:\n%s", err, s.log)
		}
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("cairn nbd did not stop after SIGTERM:\n%s", s.log)
	}
	if s.Socket != "" {
		if _, err := os.Lstat(s.Socket); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left behind: %v", s.Socket, err)
		}
	}
}

// sparseDisk is a 16 MiB disk whose holes and patterns are known: the
// runs of nbdRuns, holes elsewhere. A run's byte is 0 for random data.
type run struct {
	off, n int64
	b      byte
}

var nbdRuns = []run{
	{0, 256 << 10, 0},
	{4 << 20, 1 << 20, 0x11},
	{6 << 20, 64 << 10, 0x22},
	{8 << 20, 4 << 20, 0},
	{16<<20 - 64<<10, 64 << 10, 0x33},
}

func sparseDisk(t *testing.T, path string) []byte {
	t.Helper()
	want := make([]byte, 16<<20)
	r := rand.New(rand.NewSource(17))
	for _, x := range nbdRuns {
		p := want[x.off : x.off+x.n]
		if x.b == 0 {
			r.Read(p)
		} else {
			for i := range p {
				p[i] = x.b
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	for _, x := range nbdRuns {
		if _, err := f.WriteAt(want[x.off:x.off+x.n], x.off); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// qemu runs a QEMU tool and returns its combined output and error.
func qemu(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestNBDExport serves a point in the foreground and reads it with
// QEMU's tools: info, the map of its holes, the export list, a compare
// with the restored point, parallel readers, and a qcow2 overlay that
// takes writes and is made whole with rebase before the export stops.
func TestNBDExport(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io", "qemu-nbd", "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := filepath.Join(dir, "d.raw")
	want := sparseDisk(t, disk)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web01", "vda="+disk))
	restored := filepath.Join(dir, "restored.raw")
	mustCairn(t, vault, "restore", point, restored)

	sock := filepath.Join(dir, "web01.sock")
	s := startNBD(t, vault, "web01@latest", "--socket", sock)
	if wantURI := "nbd+unix:///vda?socket=" + sock; s.URI != wantURI || s.Point != point || s.Export != "vda" ||
		s.Size != 16<<20 || s.Socket != sock || s.TLS || s.Job == "" {
		t.Fatalf("view %+v, want uri %s", s.nbdView, wantURI)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v; want mode 0600", st, err)
	}

	out, err := qemu("qemu-img", "info", "--output=json", s.URI)
	var info struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
	}
	if err != nil || json.Unmarshal([]byte(out), &info) != nil || info.VirtualSize != 16<<20 || info.Format != "raw" {
		t.Errorf("qemu-img info: %v\n%s", err, out)
	}
	// The map: data where the runs are, holes (zero, no data) between.
	out, err = qemu("qemu-img", "map", "--output=json", s.URI)
	if err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	var m []struct {
		Start, Length int64
		Data, Zero    bool
	}
	mustJSON(t, out, &m)
	var got, wantMap []string
	for _, e := range m {
		got = append(got, fmt.Sprintf("%d+%d data=%v zero=%v", e.Start, e.Length, e.Data, e.Zero))
	}
	pos := int64(0)
	for _, x := range nbdRuns {
		if x.off > pos {
			wantMap = append(wantMap, fmt.Sprintf("%d+%d data=false zero=true", pos, x.off-pos))
		}
		wantMap = append(wantMap, fmt.Sprintf("%d+%d data=true zero=false", x.off, x.n))
		pos = x.off + x.n
	}
	if strings.Join(got, "\n") != strings.Join(wantMap, "\n") {
		t.Errorf("qemu-img map:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantMap, "\n"))
	}
	out, err = qemu("qemu-nbd", "-L", "-k", sock)
	if err != nil || !strings.Contains(out, "export: 'vda'") || !strings.Contains(out, point) || !strings.Contains(out, "readonly") ||
		!strings.Contains(out, "base:allocation") {
		t.Errorf("qemu-nbd -L: %v\n%s", err, out)
	}
	if out, err := qemu("qemu-img", "compare", "-f", "raw", "-F", "raw", s.URI, restored); err != nil {
		t.Errorf("qemu-img compare with the restored point: %v\n%s", err, out)
	}
	// A write is refused: the export is read-only.
	if out, err := qemu("qemu-io", "-f", "raw", "-c", "write 0 4k", s.URI); err == nil && !strings.Contains(out, "failed") {
		t.Errorf("a write through the export: %s", out)
	}

	// Parallel readers: several qemu-io processes, each with its reads in
	// flight at once (aio), checking patterns, beside a whole compare.
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewSource(int64(w)))
			args := []string{"-r", "-f", "raw"}
			for range 24 {
				x := nbdRuns[1+r.Intn(2)]
				if r.Intn(3) == 0 { // a hole
					x = run{256 << 10, 3 << 20, 0}
				}
				n := int64(4096 << r.Intn(4))
				off := x.off + r.Int63n((x.n-n)/4096+1)*4096
				args = append(args, "-c", fmt.Sprintf("aio_read -P 0x%x %d %d", x.b, off, n))
			}
			args = append(args, "-c", "aio_flush", s.URI)
			out, err := qemu("qemu-io", args...)
			if err != nil || strings.Contains(out, "failed") || strings.Count(out, "read ") != 24 {
				errs <- fmt.Sprintf("qemu-io reader %d: %v\n%s", w, err, out)
			}
		})
	}
	wg.Go(func() {
		if out, err := qemu("qemu-img", "compare", "-f", "raw", "-F", "raw", s.URI, disk); err != nil {
			errs <- fmt.Sprintf("qemu-img compare beside the readers: %v\n%s", err, out)
		}
	})
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	// An overlay on the export takes writes; rebase onto nothing copies
	// the rest in, and the overlay no longer needs the export.
	overlay := filepath.Join(dir, "overlay.qcow2")
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", s.URI, "-F", "raw", overlay)
	sh(t, "qemu-io", "-c", "write -P 0x5a 1M 64k", overlay)
	sh(t, "qemu-io", "-c", "write -P 0xa5 8M 4k", overlay)
	sh(t, "qemu-img", "rebase", "-q", "-b", "", overlay)
	// The same with a block-stream job, as a running VM's qemu does it.
	streamed := filepath.Join(dir, "streamed.qcow2")
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", s.URI, "-F", "raw", streamed)
	sh(t, "qemu-io", "-c", "write -P 0x5a 1M 64k", "-c", "write -P 0xa5 8M 4k", streamed)
	blockStream(t, dir, streamed)
	s.stop(t)
	copy(want[1<<20:], bytes.Repeat([]byte{0x5a}, 64<<10))
	copy(want[8<<20:], bytes.Repeat([]byte{0xa5}, 4<<10))
	wantFile := filepath.Join(dir, "want.raw")
	if err := os.WriteFile(wantFile, want, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{overlay, streamed} {
		if out, _ := qemu("qemu-img", "info", o); strings.Contains(out, "backing file") {
			t.Errorf("%s still has a backing file:\n%s", filepath.Base(o), out)
		}
		full := filepath.Join(dir, "full.raw")
		sh(t, "qemu-img", "convert", "-O", "raw", o, full)
		sameFile(t, full, wantFile)
	}
	if strings.Contains(s.log.String(), "nbd:") {
		t.Errorf("the server logged errors:\n%s", s.log)
	}
}

// blockStream opens overlay in qemu-storage-daemon and streams its
// backing into it with the QMP command block-stream, as the qemu of a
// running VM does; it fails the test unless the job completes.
func blockStream(t *testing.T, dir, overlay string) {
	t.Helper()
	needTool(t, "qemu-storage-daemon")
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command("qemu-storage-daemon",
		"--blockdev", "driver=qcow2,node-name=vda,file.driver=file,file.filename="+overlay,
		"--chardev", "socket,id=m,path="+sock+",server=on,wait=off", "--monitor", "chardev=m")
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var c net.Conn
	if !waitFor(10*time.Second, func() bool {
		var err error
		c, err = net.Dial("unix", sock)
		return err == nil
	}) {
		t.Fatalf("qemu-storage-daemon did not come up:\n%s", log.String())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	dec := json.NewDecoder(c)
	// next reads messages until one has key, and returns it.
	next := func(key string) map[string]any {
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("QMP: %v\n%s", err, log.String())
			}
			if e, ok := m["error"]; ok {
				t.Fatalf("QMP error: %v", e)
			}
			if _, ok := m[key]; ok {
				return m
			}
		}
	}
	next("QMP")
	fmt.Fprintln(c, `{"execute": "qmp_capabilities"}`)
	next("return")
	fmt.Fprintln(c, `{"execute": "block-stream", "arguments": {"job-id": "pull", "device": "vda"}}`)
	next("return")
	for {
		m := next("event")
		if m["event"] != "BLOCK_JOB_COMPLETED" {
			continue
		}
		if data, _ := m["data"].(map[string]any); data["error"] != nil || data["offset"] != data["len"] {
			t.Fatalf("block-stream: %v", m)
		}
		break
	}
	fmt.Fprintln(c, `{"execute": "quit"}`)
	cmd.Wait()
}

// TestNBDDamagedBlock damages a stored block: reads through the export
// that need it fail with an I/O error, every other read returns the
// right bytes, and the server logs each failed read.
func TestNBDDamagedBlock(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	// 128 blocks of 64 KiB, block i all byte i+1: stored uncompressed,
	// the pack's offsets follow the disk's.
	const bs, nb = 64 << 10, 128
	data := make([]byte, nb*bs)
	for i := range nb {
		copy(data[i*bs:], bytes.Repeat([]byte{byte(i + 1)}, bs))
	}
	disk := filepath.Join(dir, "d.raw")
	if err := os.WriteFile(disk, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, vault, "init", "--chunk-size", "64K", "--compression", "none")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "r", disk))
	damageOnlyPack(t, vault, func(size int64) int64 { return size / 2 })

	s := startNBD(t, vault, point)
	args := []string{"-r", "-f", "raw"}
	for i := range nb {
		args = append(args, "-c", fmt.Sprintf("read -P 0x%x %d %d", i+1, i*bs, bs))
	}
	out, _ := qemu("qemu-io", append(args, s.URI)...)
	good, bad := strings.Count(out, "read 65536/65536"), strings.Count(out, "read failed: Input/output error")
	if strings.Contains(out, "Pattern verification failed") || bad < 1 || bad > 2 || good+bad != nb {
		t.Errorf("block by block: %d good, %d I/O errors of %d; want 1 or 2 errors and no wrong bytes:\n%s", good, bad, nb, out)
	}
	out, err := qemu("qemu-img", "compare", "-f", "raw", "-F", "raw", s.URI, disk)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() < 2 || !strings.Contains(out, "Input/output error") {
		t.Errorf("qemu-img compare of the damaged export: %v, want an I/O error (not a mismatch)\n%s", err, out)
	}
	s.stop(t)
	logged := regexp.MustCompile(`(?m)^cairn: .*nbd: read of \d+ bytes at \d+: r@\S+ disk d at offset \d+: .*damaged.*$`)
	if n := len(logged.FindAllString(s.log.String(), -1)); n < bad {
		t.Errorf("%d failed reads logged, want at least %d:\n%s", n, bad, s.log)
	}
}

// TestNBDServerKilled kills the server with SIGKILL while qemu-img
// convert reads from it: the client fails cleanly, the vault verifies,
// and a server started again on the same socket serves a new client
// every byte right.
func TestNBDServerKilled(t *testing.T) {
	needTool(t, "qemu-img", "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := filepath.Join(dir, "d.raw")
	sparseDisk(t, disk)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web01", "vda="+disk))
	sock := filepath.Join(dir, "s.sock")
	s := startNBD(t, vault, point, "--socket", sock)

	// One coroutine, rate-limited: it reads 2 MiB at a time with pauses
	// between, so it is still reading when the server dies.
	out := filepath.Join(dir, "out.raw")
	conv := exec.Command("qemu-img", "convert", "-m", "1", "-r", "1M", "-O", "raw", s.URI, out)
	var convOut bytes.Buffer
	conv.Stdout, conv.Stderr = &convOut, &convOut
	if err := conv.Start(); err != nil {
		t.Fatal(err)
	}
	convDone := make(chan error, 1)
	go func() { convDone <- conv.Wait() }()
	time.Sleep(700 * time.Millisecond)
	select {
	case err := <-convDone:
		t.Fatalf("qemu-img convert ended before the kill: %v\n%s", err, convOut.String())
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
	select {
	case err := <-convDone:
		if err == nil || !strings.Contains(convOut.String(), "error") {
			t.Errorf("qemu-img convert from a killed server: %v, want an error\n%s", err, convOut.String())
		}
	case <-time.After(15 * time.Second):
		conv.Process.Kill()
		t.Fatal("qemu-img convert hangs after its server was killed")
	}
	mustCairn(t, vault, "verify")

	s = startNBD(t, vault, point, "--socket", sock)
	os.Remove(out)
	sh(t, "qemu-img", "convert", "-O", "raw", s.URI, out)
	sameFile(t, out, disk)
	s.stop(t)
}

// TestNBDThroughDaemon starts the export as a job of the daemon: the
// command returns with the URI, the point stays while served (prune
// keeps it, delete refuses it, gc keeps its blocks), and cancelling the
// job stops the export and removes its socket.
func TestNBDThroughDaemon(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := filepath.Join(dir, "d.raw")
	sparseDisk(t, disk)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	first := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web01", "vda="+disk))
	old := filepath.Join(dir, "old.raw")
	copyFile(t, disk, old)
	scribble(t, disk, 3, 8, 64<<10, 8<<20, 12<<20) // the next point differs
	startDaemon(t, vault)
	mustCairn(t, vault, "backup", "--name", "web01", "vda="+disk)

	r := cairn(t, vault, "nbd", first)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], "nbd+unix:///vda?socket="+vault+"/nbd-") ||
		!regexp.MustCompile(`^job (\S+) of the daemon serves `+first+` disk vda .*; cairn cancel (\S+) stops it\n$`).MatchString(r.stderr) {
		t.Fatalf("cairn nbd through the daemon: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	uri := lines[0]
	id := strings.Fields(r.stderr)[1]
	if out, err := qemu("qemu-img", "compare", "-f", "raw", "-F", "raw", uri, old); err != nil {
		t.Fatalf("qemu-img compare through the daemon's export: %v\n%s", err, out)
	}

	// The exported point is the older one: retention would remove it.
	var rep struct {
		Removed   int
		Resources []struct {
			Points []struct {
				Point   string
				Keep    bool
				Reasons []string
			}
		}
	}
	mustJSON(t, mustCairn(t, vault, "prune", "--keep-last", "1", "--json"), &rep)
	if rep.Removed != 0 || len(rep.Resources) != 1 || len(rep.Resources[0].Points) != 2 {
		t.Fatalf("prune while exported: %+v", rep)
	}
	for _, p := range rep.Resources[0].Points {
		if p.Point == first && (!p.Keep || !strings.Contains(strings.Join(p.Reasons, " "), "exported over NBD by job "+id)) {
			t.Errorf("prune decided %+v for the exported point", p)
		}
	}
	r = cairn(t, vault, "delete", first)
	if r.code != 1 || !strings.Contains(r.stderr, "in use") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("delete of the exported point: exit %d, %q", r.code, r.stderr)
	}
	mustCairn(t, vault, "gc", "--threshold", "1")
	if out, err := qemu("qemu-img", "compare", "-f", "raw", "-F", "raw", uri, old); err != nil {
		t.Errorf("qemu-img compare after prune and gc: %v\n%s", err, out)
	}
	var jobs []struct{ ID, Kind, State, Target string }
	mustJSON(t, mustCairn(t, vault, "jobs", "--json"), &jobs)
	found := false
	for _, j := range jobs {
		found = found || (j.ID == id && j.Kind == "nbd" && j.State == "running" && j.Target == first)
	}
	if !found {
		t.Errorf("cairn jobs does not list the export as running: %+v", jobs)
	}

	sock := strings.TrimPrefix(uri, "nbd+unix:///vda?socket=")
	mustCairn(t, vault, "cancel", id)
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s left after cancel: %v", sock, err)
	}
	if out, err := qemu("qemu-img", "info", uri); err == nil {
		t.Errorf("the export still answers after cancel:\n%s", out)
	}
	mustJSON(t, mustCairn(t, vault, "prune", "--keep-last", "1", "--json"), &rep)
	if rep.Removed != 1 {
		t.Errorf("prune after the export stopped: %+v", rep)
	}
}

// TestNBDOverTCP serves over TCP on loopback, plain and with TLS
// required: qemu-img reads with the CA's certificate, and a client
// without TLS is refused.
func TestNBDOverTCP(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := filepath.Join(dir, "d.raw")
	sparseDisk(t, disk)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web01", "vda="+disk))

	s := startNBD(t, vault, point, "--listen", "127.0.0.1:0", "--export-name", "boot")
	if !regexp.MustCompile(`^nbd://127\.0\.0\.1:\d+/boot$`).MatchString(s.URI) || s.Socket != "" || s.Address == "" {
		t.Fatalf("view over TCP: %+v", s.nbdView)
	}
	if out, err := qemu("qemu-img", "compare", "-f", "raw", "-F", "raw", s.URI, disk); err != nil {
		t.Errorf("qemu-img compare over TCP: %v\n%s", err, out)
	}
	s.stop(t)

	// Beyond loopback on request, with a warning without TLS; the URI
	// names this machine.
	s = startNBD(t, vault, point, "--listen", "0.0.0.0:0", "--allow-remote")
	host, _ := os.Hostname()
	_, port, _ := strings.Cut(s.Address, ":")
	if !strings.HasPrefix(s.URI, "nbd://"+host+":") || !strings.Contains(s.log.String(), "without TLS") {
		t.Errorf("--allow-remote on 0.0.0.0: %+v, stderr %q", s.nbdView, s.log)
	}
	if out, err := qemu("qemu-img", "info", "nbd://127.0.0.1:"+port+"/vda"); err != nil {
		t.Errorf("qemu-img info over 0.0.0.0: %v\n%s", err, out)
	}
	s.stop(t)

	certs := writeTLSFiles(t, dir)
	s = startNBD(t, vault, point, "--listen", "localhost:0", "--tls-cert", certs.cert, "--tls-key", certs.key)
	if !s.TLS || !regexp.MustCompile(`^nbds://localhost:\d+/vda$`).MatchString(s.URI) {
		t.Fatalf("view with TLS: %+v", s.nbdView)
	}
	_, port, _ = strings.Cut(s.Address, ":")
	obj := "tls-creds-x509,id=tls0,endpoint=client,dir=" + certs.dir
	opts := "driver=nbd,server.type=inet,server.host=localhost,server.port=" + port + ",export=vda,tls-creds=tls0"
	if out, err := qemu("qemu-io", "-r", "--object", obj, "--image-opts", opts, "-c", "read -P 0x33 16320k 64k"); err != nil ||
		!strings.Contains(out, "read 65536/65536") || strings.Contains(out, "failed") {
		t.Errorf("qemu-io with TLS: %v\n%s", err, out)
	}
	plain := strings.Replace(s.URI, "nbds://", "nbd://", 1)
	if out, err := qemu("qemu-img", "info", plain); err == nil {
		t.Errorf("a client without TLS got in:\n%s", out)
	}
	s.stop(t)
}

// TestNBDCommandLine checks cairn nbd's refusals: wrong command lines
// exit 2 with one line and make no vault; an unknown point or disk exits
// 1 with one line.
func TestNBDCommandLine(t *testing.T) {
	dir := t.TempDir()
	none := filepath.Join(dir, "none")
	for _, args := range [][]string{
		{"nbd"},
		{"nbd", "a@latest", "b@latest"},
		{"nbd", "a@latest", "--socket", "/tmp/x.sock", "--listen", "127.0.0.1:0"},
		{"nbd", "a@latest", "--listen", "0.0.0.0:10809"},
		{"nbd", "a@latest", "--listen", ":10809"},
		{"nbd", "a@latest", "--listen", "127.0.0.1"},
		{"nbd", "a@latest", "--listen", "127.0.0.1:99999"},
		{"nbd", "a@latest", "--allow-remote"},
		{"nbd", "a@latest", "--tls-cert", "c.pem"},
		{"nbd", "a@latest", "--tls-key", "k.pem"},
		{"nbd", "a@latest", "--export-name", ""},
		{"nbd", "a@latest", "--socket", "/" + strings.Repeat("s", 120)},
		{"nbd", "a@latest", "--frobnicate"},
	} {
		r := cairn(t, none, args...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "cairn: ") {
			t.Errorf("cairn %s: exit %d, stderr %q; want 2 and one line", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if _, err := os.Stat(none); err == nil {
		t.Error("a refused cairn nbd made a vault")
	}

	vault := filepath.Join(dir, "vault")
	disk := createSized(t, filepath.Join(dir, "d.raw"), 1<<20)
	scribble(t, disk, 1, 1, 4096, 0, 1<<20)
	mustCairn(t, vault, "init")
	mustCairn(t, vault, "backup", "--name", "web01", "vda="+disk)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nbd", "web01@nope"}, "no such point"},
		{[]string{"nbd", "db01@latest"}, "no points"},
		{[]string{"nbd", "web01@latest", "--disk", "vdb"}, `no disk "vdb"`},
		{[]string{"nbd", "web01@latest", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"}, "nonexistent"},
		{[]string{"nbd", "web01@latest", "--socket", filepath.Join(dir, "no", "such", "dir.sock")}, "no such file"},
	} {
		r := cairn(t, vault, c.args...)
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("cairn %s: exit %d, stderr %q; want 1 and one line with %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	// A server that failed to start leaves no socket behind.
	if socks, _ := filepath.Glob(filepath.Join(vault, "*.sock")); len(socks) != 0 {
		t.Errorf("sockets left: %v", socks)
	}
}

// tlsFiles are a server's certificate and key for localhost, signed by
// a CA whose certificate is in dir as qemu's tls-creds-x509 reads it
// (dir/ca-cert.pem).
type tlsFiles struct{ cert, key, dir string }

func writeTLSFiles(t *testing.T, parent string) tlsFiles {
	t.Helper()
	dir := filepath.Join(parent, "qemu-tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cairn test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(crand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(crand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := tlsFiles{cert: filepath.Join(parent, "srv.pem"), key: filepath.Join(parent, "srv.key"), dir: dir}
	write(filepath.Join(dir, "ca-cert.pem"), "CERTIFICATE", caDER)
	write(f.cert, "CERTIFICATE", srvDER)
	write(f.key, "PRIVATE KEY", keyDER)
	return f
}
