package nbd

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/image/nbd/nbdtest"
)

// qemuExport is a 16 MiB export with pattern runs and holes, all
// 4 KiB-aligned (qemu's block layer works in sectors at least).
func qemuExport() *testExport {
	return patternExport(16<<20,
		patternRun{0, 64 << 10, 0x11},
		patternRun{1 << 20, 1 << 20, 0x22},
		patternRun{3<<20 + 4096, 12 << 10, 0x33},
		patternRun{8 << 20, 3 << 20, 0x44},
		patternRun{16<<20 - 64<<10, 64 << 10, 0x55},
	)
}

// qemuOut runs a QEMU tool and returns its output and error.
func qemuOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// mapEntry is one line of qemu-img map --output=json.
type mapEntry struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	Zero   bool  `json:"zero"`
	Data   bool  `json:"data"`
}

func TestQemuImgAgainstServer(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-img")
	exp := qemuExport()
	sock := serveExports(t, Options{}, map[string]Export{"disk": exp})
	uri := UnixURI(sock, "disk")

	out := string(nbdtest.Run(t, "qemu-img", "info", "--output=json", uri))
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.VirtualSize != exp.size {
		t.Fatalf("qemu-img info: size %d (%v), want %d\n%s", info.VirtualSize, err, exp.size, out)
	}

	// The map is the export's holes and data, as BLOCK_STATUS said.
	var m []mapEntry
	if err := json.Unmarshal(nbdtest.Run(t, "qemu-img", "map", "--output=json", uri), &m); err != nil {
		t.Fatal(err)
	}
	var got []Extent
	for _, e := range m {
		if e.Data == e.Zero {
			t.Errorf("map entry %+v is neither plain data nor plain zeros", e)
		}
		f := uint32(0)
		if e.Zero {
			f = StateHole | StateZero
		}
		got = append(got, Extent{Off: e.Start, Len: e.Length, Flags: f})
	}
	if want := exp.allocation(0, exp.size); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("qemu-img map\n got %v\nwant %v", got, want)
	}

	dir := t.TempDir()
	want := filepath.Join(dir, "want.raw")
	if err := os.WriteFile(want, exp.bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// convert reads it all through the server.
	conv := filepath.Join(dir, "conv.raw")
	nbdtest.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, conv)
	b, err := os.ReadFile(conv)
	if err != nil || !bytes.Equal(b, exp.bytes()) {
		t.Fatalf("qemu-img convert output differs (%v) at %d", err, firstDiff(b, exp.bytes()))
	}
	nbdtest.Run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", want, uri)
	// compare notices a one-byte difference: the check above can fail.
	wb := exp.bytes()
	wb[(8<<20)+12345] ^= 1
	if err := os.WriteFile(want, wb, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := qemuOut("qemu-img", "compare", "-f", "raw", "-F", "raw", want, uri); err == nil {
		t.Errorf("qemu-img compare missed a changed byte:\n%s", out)
	}
}

func TestQemuIOPatterns(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-io")
	exp := qemuExport()
	sock := serveExports(t, Options{}, map[string]Export{"disk": exp})
	uri := UnixURI(sock, "disk")
	io := func(cmds ...string) (string, error) {
		args := []string{"-r", "-f", "raw", uri}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		return qemuOut("qemu-io", args...)
	}
	out, err := io(
		"read -P 0x11 0 64k",
		"read -P 0x22 1M 1M",
		"read -P 0x33 3149824 12k",
		"read -P 0 64k 960k",         // a hole
		"read -P 0x44 9M 2M",         // inside a run
		"read -P 0x55 16320k 64k",    // the last bytes
		"read -P 0x22 1572864 12345", // unaligned length
	)
	if err != nil || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io reads: %v\n%s", err, out)
	}
	if out, err := io("read -P 0x23 1M 4k"); err == nil || !strings.Contains(out, "Pattern verification failed") {
		t.Errorf("qemu-io accepted a wrong pattern: %v\n%s", err, out)
	}
	// Writes are refused: the export is read-only. qemu-io opened
	// writable is refused by qemu itself, from the READ_ONLY flag.
	if out, err := qemuOut("qemu-io", "-f", "raw", uri, "-c", "write -P 1 0 4k"); err == nil {
		t.Errorf("qemu-io wrote to a read-only export:\n%s", out)
	}
}

// Several qemu-io processes read at once, and one sends many requests
// at once on its connection: the server answers them concurrently.
func TestQemuIOParallel(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-io")
	exp := qemuExport()
	exp.delay = 20e6 // 20 ms a read: overlapping requests overlap here
	sock := serveExports(t, Options{Workers: 8}, map[string]Export{"disk": exp})
	uri := UnixURI(sock, "disk")
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := range 4 {
		wg.Go(func() {
			args := []string{"-r", "-f", "raw", uri}
			for j := range 8 {
				args = append(args, "-c", fmt.Sprintf("read -P 0x44 %d 64k", (8<<20)+int64((i*8+j)%48)*64<<10))
			}
			if out, err := qemuOut("qemu-io", args...); err != nil || strings.Contains(out, "failed") {
				errs <- fmt.Sprintf("reader %d: %v\n%s", i, err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	exp.maxInflight.Store(0)
	args := []string{"-r", "-f", "raw", uri}
	for j := range 8 {
		args = append(args, "-c", fmt.Sprintf("aio_read -P 0x22 %d 64k", (1<<20)+j*64<<10))
	}
	args = append(args, "-c", "aio_read -P 0 64k 64k", "-c", "aio_flush")
	out, err := qemuOut("qemu-io", args...)
	if err != nil || strings.Contains(out, "failed") || strings.Count(out, "read 65536/65536") != 9 {
		t.Fatalf("qemu-io aio reads: %v\n%s", err, out)
	}
	if n := exp.maxInflight.Load(); n < 2 {
		t.Errorf("at most %d reads ran at once on one connection; want them concurrent", n)
	}
}

// A damaged range is an error for qemu, never other bytes.
func TestQemuDamagedRange(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-img", "qemu-io")
	exp := qemuExport()
	exp.damaged = [][2]int64{{(8 << 20) + 1<<20, (8 << 20) + 1<<20 + 4096}}
	sock := serveExports(t, Options{}, map[string]Export{"disk": exp})
	uri := UnixURI(sock, "disk")
	conv := filepath.Join(t.TempDir(), "conv.raw")
	out, err := qemuOut("qemu-img", "convert", "-f", "raw", "-O", "raw", uri, conv)
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Errorf("qemu-img convert of a damaged export: %v\n%s", err, out)
	}
	out, err = qemuOut("qemu-io", "-r", "-f", "raw", uri, "-c", "read -P 0x44 9M 64k")
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Errorf("qemu-io read of the damaged range: %v\n%s", err, out)
	}
	out, err = qemuOut("qemu-io", "-r", "-f", "raw", uri, "-c", "read -P 0x44 8M 1M", "-c", "read -P 0x44 9220k 64k")
	if err != nil || strings.Contains(out, "failed") {
		t.Errorf("qemu-io reads beside the damage: %v\n%s", err, out)
	}
}

func TestQemuNBDList(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-nbd")
	sock := serveExports(t, Options{}, map[string]Export{"disk": qemuExport(), "other": sampleExport()})
	out := string(nbdtest.Run(t, "qemu-nbd", "--list", "-k", sock))
	for _, want := range []string{
		"exports available: 2",
		"export: 'disk'", "size:  16777216", "description: a pattern disk",
		"export: 'other'", "size:  8388608", "description: a test disk",
		"readonly", "opt block: 65536", "max block: 33554432", "base:allocation",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("qemu-nbd --list lacks %q:\n%s", want, out)
		}
	}
}

// nbd-client can list exports (TCP only). Attaching /dev/nbdX needs the
// nbd kernel module, which containers do not have: not tested.
func TestNBDClientList(t *testing.T) {
	nbdtest.NeedTool(t, "nbd-client")
	ln, err := ListenTCP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, Options{}, map[string]Export{"disk": qemuExport(), "other": sampleExport()}, ln)
	host, port, _ := strings.Cut(ln.Addr().String(), ":")
	out := string(nbdtest.Run(t, "nbd-client", "-l", host, port))
	for _, want := range []string{"disk: a pattern disk", "other: a test disk"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbd-client -l lacks %q:\n%s", want, out)
		}
	}
}

// qemu-img speaks TLS with x509 certificates to a server that requires
// it, and cannot get in without.
func TestQemuTLS(t *testing.T) {
	nbdtest.NeedTool(t, "qemu-img")
	certs := makeCerts(t)
	exp := qemuExport()
	sock := serveExports(t, Options{TLSConfig: certs.server(), RequireTLS: true}, map[string]Export{"disk": exp})
	dir := certs.writeQemuDir(t, "client")
	obj := "tls-creds-x509,id=tls0,endpoint=client,verify-peer=on,dir=" + dir
	opts := "driver=nbd,server.type=unix,server.path=" + sock + ",export=disk,tls-creds=tls0,tls-hostname=localhost"
	want := filepath.Join(t.TempDir(), "want.raw")
	if err := os.WriteFile(want, exp.bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	nbdtest.Run(t, "qemu-img", "compare", "--object", obj, "--image-opts", "driver=file,filename="+want, opts)
	out, err := qemuOut("qemu-img", "info", UnixURI(sock, "disk"))
	if err == nil {
		t.Errorf("qemu-img without TLS got in:\n%s", out)
	}
	// A server whose certificate another CA signed is refused by qemu
	// (it still knows qemu's client certificate: only qemu's check can
	// fail).
	other := makeCerts(t)
	cfg := certs.server()
	cfg.Certificates = []tls.Certificate{other.serverCert}
	sock2 := serveExports(t, Options{TLSConfig: cfg, RequireTLS: true}, map[string]Export{"disk": exp})
	out, err = qemuOut("qemu-img", "info", "--object", obj, "--image-opts", strings.Replace(opts, sock, sock2, 1))
	if err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("qemu-img trusted a server certificate of another CA: %v\n%s", err, out)
	}
}
