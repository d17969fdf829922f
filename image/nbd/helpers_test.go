package nbd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"
)

var errDamaged = errors.New("damaged block")

// testExport is an export held as runs of data with holes between them,
// so that a sparse export can be far larger than memory. Ranges in
// damaged fail to read, as a vault's damaged blocks do.
type testExport struct {
	size       int64
	runs       []dataRun // sorted, disjoint, never adjacent
	damaged    [][2]int64
	bs         int64
	desc       string
	reads      atomic.Int64
	closes     atomic.Int32
	prefetches atomic.Int32

	// delay slows every read, so that requests overlap; inflight and
	// maxInflight count reads running at once.
	delay       time.Duration
	inflight    atomic.Int32
	maxInflight atomic.Int32
}

// patternExport is an export of size bytes whose data runs are filled
// with one byte each: qemu-io's read -P checks them.
func patternExport(size int64, runs ...patternRun) *testExport {
	e := &testExport{size: size, bs: 64 << 10, desc: "a pattern disk"}
	for _, r := range runs {
		e.runs = append(e.runs, dataRun{off: r.off, b: bytes.Repeat([]byte{r.b}, int(r.n))})
	}
	return e
}

type patternRun struct {
	off, n int64
	b      byte
}

type dataRun struct {
	off int64
	b   []byte
}

func (r dataRun) end() int64 { return r.off + int64(len(r.b)) }

// newTestExport makes an export of size bytes whose data lies in the
// given [off, len) ranges, filled from seed.
func newTestExport(size int64, seed int64, ranges ...[2]int64) *testExport {
	rng := mrand.New(mrand.NewSource(seed))
	e := &testExport{size: size, bs: 64 << 10, desc: "a test disk"}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
	for _, r := range ranges {
		b := make([]byte, (r[1]+7)/8*8)
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
		}
		b = b[:r[1]]
		// Stamp offsets so a misplaced read cannot match by chance.
		for i := int64(0); i+8 <= r[1]; i += 4096 {
			copy(b[i:], fmt.Sprintf("%08x", (r[0]+i)/4096))
		}
		e.runs = append(e.runs, dataRun{off: r[0], b: b})
	}
	return e
}

func (e *testExport) Size() int64         { return e.size }
func (e *testExport) BlockSize() int64    { return e.bs }
func (e *testExport) Description() string { return e.desc }
func (e *testExport) Close() error        { e.closes.Add(1); return nil }
func (e *testExport) Prefetch(off int64)  { e.prefetches.Add(1) }

func (e *testExport) ReadAt(p []byte, off int64) (int, error) {
	e.reads.Add(1)
	if e.delay > 0 {
		n := e.inflight.Add(1)
		defer e.inflight.Add(-1)
		for m := e.maxInflight.Load(); n > m && !e.maxInflight.CompareAndSwap(m, n); m = e.maxInflight.Load() {
		}
		time.Sleep(e.delay)
	}
	if off < 0 || off >= e.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > e.size-off {
		p, eof = p[:e.size-off], io.EOF
	}
	end := off + int64(len(p))
	for _, d := range e.damaged {
		if d[0] < end && d[1] > off {
			n := max(d[0]-off, 0)
			e.fill(p[:n], off)
			return int(n), fmt.Errorf("offset %d: %w", max(d[0], off), errDamaged)
		}
	}
	e.fill(p, off)
	return len(p), eof
}

func (e *testExport) fill(p []byte, off int64) {
	clear(p)
	end := off + int64(len(p))
	for _, r := range e.runs {
		if r.off < end && r.end() > off {
			s := max(r.off, off)
			t := min(r.end(), end)
			copy(p[s-off:t-off], r.b[s-r.off:t-r.off])
		}
	}
}

func (e *testExport) NextData(off int64) (int64, int64, error) {
	for _, r := range e.runs {
		if r.end() > off {
			return max(r.off, off), r.end(), nil
		}
	}
	return e.size, e.size, nil
}

// bytes is the whole export in memory (small exports only).
func (e *testExport) bytes() []byte {
	b := make([]byte, e.size)
	e.fill(b, 0)
	return b
}

// allocation is the base:allocation extents the export should report
// over [off, off+n).
func (e *testExport) allocation(off, n int64) []Extent {
	var out []Extent
	pos, end := off, off+n
	for _, r := range e.runs {
		if r.end() <= pos || r.off >= end {
			continue
		}
		if r.off > pos {
			out = append(out, Extent{Off: pos, Len: r.off - pos, Flags: StateHole | StateZero})
			pos = r.off
		}
		t := min(r.end(), end)
		out = append(out, Extent{Off: pos, Len: t - pos})
		pos = t
	}
	if pos < end {
		out = append(out, Extent{Off: pos, Len: end - pos, Flags: StateHole | StateZero})
	}
	return out
}

// plainExport hides everything but ReadAt and Size.
type plainExport struct{ e Export }

func (p plainExport) ReadAt(b []byte, off int64) (int, error) { return p.e.ReadAt(b, off) }
func (p plainExport) Size() int64                             { return p.e.Size() }

// serveExports starts a server of exports on a unix socket and returns
// the socket's path; it stops when the test ends.
func serveExports(t testing.TB, opts Options, exports map[string]Export) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	ln, err := ListenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, opts, exports, ln)
	return sock
}

// serveOn serves exports on ln until the test ends.
func serveOn(t testing.TB, opts Options, exports map[string]Export, ln net.Listener) {
	t.Helper()
	if opts.Lookup == nil {
		opts.Lookup = func(_ context.Context, name string) (Export, error) {
			if e, ok := exports[name]; ok {
				return e, nil
			}
			return nil, fmt.Errorf("%q: %w", name, ErrUnknownExport)
		}
	}
	if opts.List == nil {
		opts.List = func(context.Context) ([]ExportInfo, error) {
			var out []ExportInfo
			for name, e := range exports {
				info := ExportInfo{Name: name}
				if d, ok := e.(Describer); ok {
					info.Description = d.Description()
				}
				out = append(out, info)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
			return out, nil
		}
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
	})
}

// dial connects to export on the unix socket sock.
func dial(t testing.TB, sock, export string, opts ClientOptions) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, UnixURI(sock, export), opts)
	if err != nil {
		t.Fatalf("Dial %s: %v", export, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCerts is a CA and two certificates it signed, for TLS tests.
type testCerts struct {
	caPEM                  []byte
	serverCert, clientCert tls.Certificate
	serverPEM, serverKey   []byte
	clientPEM, clientKey   []byte
	pool                   *x509.CertPool
}

// makeCerts makes a CA, a server certificate for localhost and
// 127.0.0.1, and a client certificate.
func makeCerts(t testing.TB) *testCerts {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cairn test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, []byte, tls.Certificate) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM, keyPEM, pair
	}
	c := &testCerts{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	c.pool.AddCert(caCert)
	c.serverPEM, c.serverKey, c.serverCert = leaf(2, "localhost", x509.ExtKeyUsageServerAuth)
	c.clientPEM, c.clientKey, c.clientCert = leaf(3, "cairn test client", x509.ExtKeyUsageClientAuth)
	return c
}

// server is a TLS configuration that requires a client certificate.
func (c *testCerts) server() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.serverCert}, ClientCAs: c.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func (c *testCerts) client() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.clientCert}, RootCAs: c.pool, ServerName: "localhost"}
}

// writeQemuDir writes the files qemu's tls-creds-x509 reads for the
// given endpoint into a new directory, and returns it.
func (c *testCerts) writeQemuDir(t testing.TB, endpoint string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{"ca-cert.pem": c.caPEM}
	if endpoint == "client" {
		files["client-cert.pem"], files["client-key.pem"] = c.clientPEM, c.clientKey
	} else {
		files["server-cert.pem"], files["server-key.pem"] = c.serverPEM, c.serverKey
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
