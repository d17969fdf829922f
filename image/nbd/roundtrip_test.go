package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand"
	"reflect"
	"sync"
	"testing"
	"time"
)

// sampleExport is an 8 MiB export with data runs, holes between them,
// and data at both ends.
func sampleExport() *testExport {
	return newTestExport(8<<20, 1,
		[2]int64{0, 100 << 10},
		[2]int64{1 << 20, 64 << 10},
		[2]int64{(1 << 20) + 200<<10, 1<<20 + 5},
		[2]int64{4 << 20, 1000},
		[2]int64{(8 << 20) - 70<<10, 70 << 10},
	)
}

func TestRoundTrip(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts ClientOptions
	}{
		{"structured", ClientOptions{MetaContexts: []string{ContextAllocation}}},
		{"simple", ClientOptions{noStructured: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			exp := sampleExport()
			sock := serveExports(t, Options{}, map[string]Export{"disk": exp})
			c := dial(t, sock, "disk", mode.opts)
			want := exp.bytes()
			if c.Size() != exp.size {
				t.Fatalf("Size = %d, want %d", c.Size(), exp.size)
			}
			if c.Flags()&FlagReadOnly == 0 {
				t.Errorf("flags %#x lack READ_ONLY", c.Flags())
			}
			if c.BlockSize() != exp.bs {
				t.Errorf("BlockSize = %d, want %d", c.BlockSize(), exp.bs)
			}
			if c.Structured() == mode.opts.noStructured {
				t.Errorf("Structured = %v", c.Structured())
			}
			got := make([]byte, exp.size)
			if n, err := c.ReadAt(got, 0); err != nil || n != len(got) {
				t.Fatalf("ReadAt whole: %d, %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("whole read differs at %d", firstDiff(got, want))
			}
			// Many readers at once, at odd offsets and lengths.
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for g := range 16 {
				wg.Go(func() {
					rng := mrand.New(mrand.NewSource(int64(g)))
					for range 30 {
						off := rng.Int63n(exp.size)
						n := rng.Int63n(256<<10) + 1
						if rng.Intn(8) == 0 {
							n = rng.Int63n(3<<20) + 1
						}
						n = min(n, exp.size-off)
						b := make([]byte, n)
						if _, err := c.ReadAt(b, off); err != nil {
							errs <- fmt.Errorf("ReadAt(%d, %d): %v", off, n, err)
							return
						}
						if !bytes.Equal(b, want[off:off+n]) {
							errs <- fmt.Errorf("ReadAt(%d, %d) differs at +%d", off, n, firstDiff(b, want[off:off+n]))
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
			// A read past the end is cut short with io.EOF.
			b := make([]byte, 100)
			if n, err := c.ReadAt(b, exp.size-10); n != 10 || err == nil {
				t.Errorf("ReadAt past the end: %d, %v", n, err)
			}
			if mode.opts.noStructured {
				if _, err := c.Extents(context.Background(), ContextAllocation, 0, exp.size); !errors.Is(err, ErrUnsupported) {
					t.Errorf("Extents without structured replies: %v", err)
				}
				return
			}
			if !c.HasMetaContext(ContextAllocation) {
				t.Fatal("base:allocation not granted")
			}
			exts, err := c.Extents(context.Background(), ContextAllocation, 0, exp.size)
			if err != nil {
				t.Fatal(err)
			}
			if w := exp.allocation(0, exp.size); !reflect.DeepEqual(exts, w) {
				t.Errorf("extents\n got %v\nwant %v", exts, w)
			}
			// A range that starts and ends inside holes.
			sub, err := c.Extents(context.Background(), ContextAllocation, 200<<10, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if w := exp.allocation(200<<10, 1<<20); !reflect.DeepEqual(sub, w) {
				t.Errorf("extents of a part\n got %v\nwant %v", sub, w)
			}
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
			var wantRuns [][2]int64
			for _, r := range exp.runs {
				wantRuns = append(wantRuns, [2]int64{r.off, r.end()})
			}
			if !reflect.DeepEqual(runs, wantRuns) {
				t.Errorf("NextData runs\n got %v\nwant %v", runs, wantRuns)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A server that answers block status in parts (two extents a reply)
// still gives the client every extent.
func TestRoundTripShortExtents(t *testing.T) {
	exp := sampleExport()
	sock := serveExports(t, Options{maxExtents: 2}, map[string]Export{"": exp})
	c := dial(t, sock, "", ClientOptions{MetaContexts: []string{ContextAllocation}})
	st, err := c.BlockStatus(context.Background(), 0, exp.size, false)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st[ContextAllocation]); n != 2 {
		t.Fatalf("one request gave %d extents, want the server's cap of 2", n)
	}
	exts, err := c.Extents(context.Background(), ContextAllocation, 0, exp.size)
	if err != nil {
		t.Fatal(err)
	}
	if w := exp.allocation(0, exp.size); !reflect.DeepEqual(exts, w) {
		t.Errorf("extents\n got %v\nwant %v", exts, w)
	}
	one, err := c.BlockStatus(context.Background(), 50<<10, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	if w := []Extent{{Off: 50 << 10, Len: 50 << 10}}; !reflect.DeepEqual(one[ContextAllocation], w) {
		t.Errorf("REQ_ONE gave %v, want %v", one[ContextAllocation], w)
	}
}

// An export of 12 GiB: block status needs several requests (32-bit
// lengths) and a read across 4 GiB is split at the maximum payload.
func TestRoundTripLarge(t *testing.T) {
	const gib = int64(1) << 30
	exp := newTestExport(12*gib, 2,
		[2]int64{4*gib - 1<<20, 2 << 20},
		[2]int64{9 * gib, 1 << 20},
		[2]int64{12*gib - 4096, 4096},
	)
	sock := serveExports(t, Options{}, map[string]Export{"big": exp})
	c := dial(t, sock, "big", ClientOptions{MetaContexts: []string{ContextAllocation}})
	exts, err := c.Extents(context.Background(), ContextAllocation, 0, exp.size)
	if err != nil {
		t.Fatal(err)
	}
	if w := exp.allocation(0, exp.size); !reflect.DeepEqual(exts, w) {
		t.Errorf("extents\n got %v\nwant %v", exts, w)
	}
	off, n := 4*gib-17<<20, int64(34<<20) // two requests: 32 MiB, then 2
	got := make([]byte, n)
	if _, err := c.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, n)
	exp.fill(want, off)
	if !bytes.Equal(got, want) {
		t.Fatalf("read across 4 GiB differs at +%d", firstDiff(got, want))
	}
	if s, e, err := c.NextData(5 * gib); err != nil || s != 9*gib || e != 9*gib+1<<20 {
		t.Errorf("NextData(5 GiB) = %d, %d, %v", s, e, err)
	}
}

// A damaged range is an I/O error at its offset, never bytes; reads
// around it work.
func TestRoundTripDamaged(t *testing.T) {
	for _, simple := range []bool{false, true} {
		t.Run(fmt.Sprint("simple=", simple), func(t *testing.T) {
			exp := sampleExport()
			bad := [2]int64{1<<20 + 16<<10, 1<<20 + 20<<10}
			exp.damaged = [][2]int64{bad}
			sock := serveExports(t, Options{}, map[string]Export{"": exp})
			c := dial(t, sock, "", ClientOptions{noStructured: simple})
			b := make([]byte, 64<<10)
			_, err := c.ReadAt(b, 1<<20)
			var ne *Error
			if !errors.As(err, &ne) || !errors.Is(err, EIO) {
				t.Fatalf("read over damage: %v, want EIO", err)
			}
			if !simple && ne.Offset != bad[0] {
				t.Errorf("error offset %d, want %d", ne.Offset, bad[0])
			}
			want := exp.bytes()
			for _, off := range []int64{1 << 20, bad[1]} {
				b := make([]byte, 16<<10)
				if _, err := c.ReadAt(b, off); err != nil || !bytes.Equal(b, want[off:off+int64(len(b))]) {
					t.Errorf("read beside the damage at %d: %v", off, err)
				}
			}
		})
	}
}

func TestRoundTripTLS(t *testing.T) {
	certs := makeCerts(t)
	exp := sampleExport()
	sock := serveExports(t, Options{TLSConfig: certs.server(), RequireTLS: true}, map[string]Export{"disk": exp})
	c := dial(t, sock, "disk", ClientOptions{TLSConfig: certs.client(), MetaContexts: []string{ContextAllocation}})
	got := make([]byte, exp.size)
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, exp.bytes()) {
		t.Fatalf("read over TLS: %v", err)
	}
	if !c.HasMetaContext(ContextAllocation) {
		t.Error("base:allocation not granted over TLS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Dial(ctx, UnixURI(sock, "disk"), ClientOptions{}); !errors.Is(err, ErrTLSRequired) {
		t.Errorf("plain client of a TLS-only server: %v, want ErrTLSRequired", err)
	}
	untrusted := certs.client()
	untrusted.Certificates = nil
	if _, err := Dial(ctx, UnixURI(sock, "disk"), ClientOptions{TLSConfig: untrusted}); err == nil {
		t.Error("client without a certificate got in")
	}
}

func TestUnknownExport(t *testing.T) {
	sock := serveExports(t, Options{}, map[string]Export{"disk": sampleExport()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Dial(ctx, UnixURI(sock, "nope"), ClientOptions{}); !errors.Is(err, ErrUnknownExport) {
		t.Errorf("Dial of a missing export: %v", err)
	}
}

// Closing the client lets requests in flight finish; later ones fail.
func TestClientClose(t *testing.T) {
	exp := sampleExport()
	sock := serveExports(t, Options{}, map[string]Export{"": exp})
	c := dial(t, sock, "", ClientOptions{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrDisconnected) {
		t.Errorf("read after Close: %v", err)
	}
}

// Cancelling the server's context ends its connections and Serve.
func TestServerShutdown(t *testing.T) {
	exp := sampleExport()
	sock := serveExports(t, Options{}, map[string]Export{"": exp})
	c := dial(t, sock, "", ClientOptions{})
	if _, err := c.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	// The cleanup of serveExports cancels and checks Serve returns; run
	// it now by hand through a sub-test's server instead.
	ctx, cancel := context.WithCancel(context.Background())
	srv, _ := NewServer(Options{Lookup: func(context.Context, string) (Export, error) { return exp, nil }, Logf: t.Logf})
	ln, err := ListenUnix(sock+"2", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	c2 := dial(t, sock+"2", "", ClientOptions{})
	if _, err := c2.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
	if _, err := c2.ReadAt(make([]byte, 4096), 0); !errors.Is(err, ErrDisconnected) {
		t.Errorf("read after the server shut down: %v", err)
	}
	if exp.closes.Load() != 1 {
		t.Errorf("export closed %d times, want 1", exp.closes.Load())
	}
}

// An export with nothing but ReadAt and Size is all data, with the
// default preferred block size.
func TestPlainExport(t *testing.T) {
	exp := sampleExport()
	sock := serveExports(t, Options{}, map[string]Export{"": plainExport{exp}})
	c := dial(t, sock, "", ClientOptions{MetaContexts: []string{ContextAllocation}})
	exts, err := c.Extents(context.Background(), ContextAllocation, 0, c.Size())
	if err != nil {
		t.Fatal(err)
	}
	if w := []Extent{{Off: 0, Len: exp.size}}; !reflect.DeepEqual(exts, w) {
		t.Errorf("extents %v, want %v", exts, w)
	}
	if c.BlockSize() != 4096 {
		t.Errorf("BlockSize %d, want 4096", c.BlockSize())
	}
	got := make([]byte, exp.size)
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, exp.bytes()) {
		t.Errorf("read: %v", err)
	}
}
