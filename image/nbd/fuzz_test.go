package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fuzzConn is one side of a connection: it reads a fixed input, then
// EOF, and discards what is written.
type fuzzConn struct {
	r *bytes.Reader
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return fuzzAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return fuzzAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

type fuzzAddr struct{}

func (fuzzAddr) Network() string { return "fuzz" }
func (fuzzAddr) String() string  { return "fuzz" }

// fuzzExport is small, so that any read the fuzzer asks for is cheap,
// with holes and a damaged range.
func fuzzExport() *testExport {
	e := newTestExport(256<<10, 5, [2]int64{0, 8 << 10}, [2]int64{64 << 10, 64 << 10}, [2]int64{200 << 10, 4 << 10})
	e.damaged = [][2]int64{{100 << 10, 104 << 10}}
	return e
}

func fuzzServer(t *testing.T, data []byte) {
	exp := fuzzExport()
	srv, err := NewServer(Options{
		Lookup: func(_ context.Context, name string) (Export, error) {
			if name == "disk" || name == "" {
				return exp, nil
			}
			return nil, ErrUnknownExport
		},
		List: func(context.Context) ([]ExportInfo, error) { return []ExportInfo{{Name: "disk"}}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), &fuzzConn{r: bytes.NewReader(data)}) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrUnknownExport) {
			t.Fatalf("ServeConn: error without sentinel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn hangs on its input")
	}
}

// handshakePrefix is what cairn's client sends up to transmission:
// client flags, STRUCTURED_REPLY, SET_META_CONTEXT, GO.
func handshakePrefix() []byte {
	b := binary.BigEndian.AppendUint32(nil, clientFixed|clientNoZeroes)
	opt := func(typ uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, magicOpt)
		b = binary.BigEndian.AppendUint32(b, typ)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	opt(optStructuredReply, nil)
	opt(optSetMetaContext, metaQuery("disk", []string{ContextAllocation}))
	opt(optGo, infoData("disk", infoBlockSize))
	return b
}

// FuzzServerHandshake feeds arbitrary client bytes to the server from
// the first byte: option haggling, then whatever transmission follows.
// It must end with nil or a sentinel error, never panic or hang.
func FuzzServerHandshake(f *testing.F) {
	f.Add(handshakePrefix())
	f.Fuzz(fuzzServer)
}

// FuzzServerRequests feeds arbitrary requests to a server past a valid
// handshake (structured replies, base:allocation).
func FuzzServerRequests(f *testing.F) {
	req := func(flags, typ uint16, off uint64, n uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, magicRequest)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint64(b, 1)
		b = binary.BigEndian.AppendUint64(b, off)
		return binary.BigEndian.AppendUint32(b, n)
	}
	f.Add(req(0, cmdRead, 0, 4096))
	f.Add(append(req(0, cmdWrite, 0, 4), 1, 2, 3, 4))
	f.Add(req(cmdFlagReqOne, cmdBlockStatus, 0, 1<<20))
	prefix := handshakePrefix()
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzServer(t, append(prefix[:len(prefix):len(prefix)], data...))
	})
}

// serverPrefix is what a server sends up to transmission for the
// client's handshakePrefix: greeting, ACK, META_CONTEXT base:allocation
// (ID 1), ACK, INFO_EXPORT of 256 KiB, ACK.
func serverPrefix() []byte {
	b := binary.BigEndian.AppendUint64(nil, magicInit)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint16(b, handshakeFixed|handshakeNoZeroes)
	rep := func(opt, typ uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, magicOptReply)
		b = binary.BigEndian.AppendUint32(b, opt)
		b = binary.BigEndian.AppendUint32(b, typ)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	rep(optStructuredReply, repAck, nil)
	rep(optSetMetaContext, repMetaContext, append(binary.BigEndian.AppendUint32(nil, 1), ContextAllocation...))
	rep(optSetMetaContext, repAck, nil)
	info := binary.BigEndian.AppendUint16(nil, infoExport)
	info = binary.BigEndian.AppendUint64(info, 256<<10)
	info = binary.BigEndian.AppendUint16(info, FlagHasFlags|FlagReadOnly)
	rep(optGo, repInfo, info)
	rep(optGo, repAck, nil)
	return b
}

func fuzzClient(t *testing.T, data []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := NewClient(ctx, &fuzzConn{r: bytes.NewReader(data)}, "disk", ClientOptions{MetaContexts: []string{ContextAllocation}})
	if err != nil {
		if ctx.Err() != nil {
			t.Fatal("handshake hangs on its input")
		}
		if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrUnsupported) &&
			!errors.Is(err, ErrUnknownExport) && !errors.Is(err, ErrTLSRequired) && !errors.Is(err, ErrShutdown) {
			t.Fatalf("NewClient: error without sentinel: %v", err)
		}
		return
	}
	defer c.Close()
	// Requests from several goroutines, against replies that end.
	var wg sync.WaitGroup
	check := func(what string, err error) {
		var ne *Error
		if err != nil && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrUnsupported) &&
			!errors.As(err, &ne) && ctx.Err() == nil {
			t.Errorf("%s: error without sentinel: %v", what, err)
		}
	}
	wg.Go(func() {
		_, err := c.ReadAtContext(ctx, make([]byte, min(c.Size(), 4096)), 0)
		if c.Size() == 0 && errors.Is(err, io.EOF) {
			err = nil // a read at the end of an empty export: io.ReaderAt's EOF
		}
		check("ReadAt", err)
	})
	wg.Go(func() {
		if c.Size() > 0 {
			_, err := c.BlockStatus(ctx, 0, c.Size(), false)
			check("BlockStatus", err)
		}
	})
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("requests hang on their replies")
	}
}

// FuzzClientHandshake feeds arbitrary server bytes to the client's
// handshake.
func FuzzClientHandshake(f *testing.F) {
	f.Add(serverPrefix())
	f.Fuzz(fuzzClient)
}

// FuzzClientReplies feeds arbitrary replies to a client past a valid
// handshake, while it reads and asks for block status.
func FuzzClientReplies(f *testing.F) {
	for _, seed := range clientReplySeeds() {
		f.Add(seed)
	}
	prefix := serverPrefix()
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzClient(t, append(prefix[:len(prefix):len(prefix)], data...))
	})
}

// recordConn passes a connection through, keeping what it reads.
type recordConn struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

var updateSeeds = flag.Bool("update", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// TestFuzzSeeds records real sessions between cairn's client and server
// and checks them against the fuzz seed corpora in testdata/fuzz, which
// are these recordings (-update rewrites them). The corpora double as
// golden transcripts of the wire format: a change to what either end
// sends shows here.
func TestFuzzSeeds(t *testing.T) {
	exp := fuzzExport()
	sessions := []struct {
		name string
		opts ClientOptions
		do   func(c *Client)
	}{
		{"read", ClientOptions{MetaContexts: []string{ContextAllocation}}, func(c *Client) {
			c.ReadAt(make([]byte, 1024), 8<<10-512) // data, hole
			c.ReadAt(make([]byte, 512), 64<<10-256) // hole, data
			c.ReadAt(make([]byte, 4096), 100<<10)   // damaged
		}},
		{"status", ClientOptions{MetaContexts: []string{ContextAllocation}}, func(c *Client) {
			c.Extents(context.Background(), ContextAllocation, 0, c.Size())
			c.BlockStatus(context.Background(), 0, 4096, true)
		}},
		{"simple", ClientOptions{noStructured: true}, func(c *Client) {
			c.ReadAt(make([]byte, 512), 0)
			c.ReadAt(make([]byte, 4096), 100<<10)
		}},
	}
	for _, s := range sessions {
		a, b := net.Pipe()
		srv, _ := NewServer(Options{Lookup: func(context.Context, string) (Export, error) { return exp, nil }})
		sc, cc := &recordConn{Conn: a}, &recordConn{Conn: b}
		done := make(chan struct{})
		go func() { srv.ServeConn(context.Background(), sc); close(done) }()
		c, err := NewClient(context.Background(), cc, "disk", s.opts)
		if err != nil {
			t.Fatal(err)
		}
		s.do(c)
		c.Close()
		<-done
		seed(t, "FuzzServerHandshake", s.name, sc.got.Bytes())
		if s.name != "simple" {
			got, prefix := sc.got.Bytes(), handshakePrefix()
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("the client's handshake is not handshakePrefix:\n%q\n%q", got, prefix)
			}
			seed(t, "FuzzServerRequests", s.name, got[len(prefix):])
		}
		seed(t, "FuzzClientHandshake", s.name, cc.got.Bytes())
	}
	for i, b := range clientReplySeeds() {
		seed(t, "FuzzClientReplies", fmt.Sprint("crafted", i), b)
	}
}

// chunk encodes one structured reply chunk.
func chunk(flags, typ uint16, cookie uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicStructReply)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// clientReplySeeds are replies to fuzzClient's two requests (cookies 1
// and 2, a read of 4 KiB at 0 and block status of the export, in
// either order): data, hole, block status and error chunks.
func clientReplySeeds() [][]byte {
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	data := func(cookie uint64, flags uint16, off uint64, n int) []byte {
		return chunk(flags, replyTypeOffsetData, cookie, append(u64(off), make([]byte, n)...))
	}
	hole := func(cookie uint64, flags uint16, off uint64, n uint32) []byte {
		return chunk(flags, replyTypeOffsetHole, cookie, binary.BigEndian.AppendUint32(u64(off), n))
	}
	status := func(cookie uint64, ext ...uint32) []byte {
		p := binary.BigEndian.AppendUint32(nil, 1)
		for _, e := range ext {
			p = binary.BigEndian.AppendUint32(p, e)
		}
		return chunk(replyFlagDone, replyTypeBlockStatus, cookie, p)
	}
	errOff := func(cookie uint64, off uint64) []byte {
		p := binary.BigEndian.AppendUint32(nil, uint32(EIO))
		p = binary.BigEndian.AppendUint16(p, 2)
		p = append(p, "io"...)
		return chunk(replyFlagDone, replyTypeErrorOffset, cookie, append(p, u64(off)...))
	}
	var seeds [][]byte
	for _, rc := range [][2]uint64{{1, 2}, {2, 1}} {
		r, s := rc[0], rc[1]
		seeds = append(seeds,
			bytes.Join([][]byte{data(r, 0, 0, 512), hole(r, replyFlagDone, 512, 3584),
				status(s, 8<<10, 0, 56<<10, 3, 192<<10, 0)}, nil),
			bytes.Join([][]byte{data(r, 0, 0, 256), errOff(r, 256), status(s, 256<<10, 0)}, nil),
		)
	}
	return seeds
}

// seed checks (or with -update writes) one seed file.
func seed(t *testing.T, target, name string, data []byte) {
	t.Helper()
	path := filepath.Join("testdata", "fuzz", target, name)
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if *updateSeeds {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write the seeds)", err)
	}
	if string(old) != body {
		t.Errorf("%s differs from this session's recording: the wire format changed? (-update rewrites it)\n got %s\nwant %s", path, body, old)
	}
}
