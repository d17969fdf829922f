package nbd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// rawConn speaks the client side of the protocol by hand, to test the
// server's answers to what cairn's own client never sends.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func rawDial(t *testing.T, sock string, flags uint32) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, r: bufio.NewReader(c)}
	var h [18]byte
	r.read(h[:])
	if binary.BigEndian.Uint64(h[:]) != magicInit || binary.BigEndian.Uint64(h[8:]) != magicOpt {
		t.Fatalf("greeting %x", h)
	}
	if f := binary.BigEndian.Uint16(h[16:]); f != handshakeFixed|handshakeNoZeroes {
		t.Errorf("handshake flags %#x", f)
	}
	r.write(binary.BigEndian.AppendUint32(nil, flags))
	return r
}

func (r *rawConn) read(b []byte) {
	r.t.Helper()
	if _, err := io.ReadFull(r.r, b); err != nil {
		r.t.Fatalf("read: %v", err)
	}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *rawConn) opt(typ uint32, data []byte) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	r.write(append(b, data...))
}

// reply reads one option reply to opt and returns its type and data.
func (r *rawConn) reply(opt uint32) (uint32, []byte) {
	r.t.Helper()
	var h [20]byte
	r.read(h[:])
	if binary.BigEndian.Uint64(h[:]) != magicOptReply || binary.BigEndian.Uint32(h[8:]) != opt {
		r.t.Fatalf("option reply header %x for %s", h, optName(opt))
	}
	d := make([]byte, binary.BigEndian.Uint32(h[16:]))
	r.read(d)
	return binary.BigEndian.Uint32(h[12:]), d
}

func (r *rawConn) expect(opt, typ uint32) []byte {
	r.t.Helper()
	got, d := r.reply(opt)
	if got != typ {
		r.t.Fatalf("%s: reply %s (%q), want %s", optName(opt), repName(got), d, repName(typ))
	}
	return d
}

// infoData is the data of NBD_OPT_INFO/GO.
func infoData(name string, reqs ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reqs)))
	for _, q := range reqs {
		b = binary.BigEndian.AppendUint16(b, q)
	}
	return b
}

// goStructured negotiates structured replies and base:allocation, then
// enters transmission.
func (r *rawConn) goStructured(name string) {
	r.t.Helper()
	r.opt(optStructuredReply, nil)
	r.expect(optStructuredReply, repAck)
	r.opt(optSetMetaContext, metaQuery(name, []string{ContextAllocation}))
	r.expect(optSetMetaContext, repMetaContext)
	r.expect(optSetMetaContext, repAck)
	r.opt(optGo, infoData(name))
	for {
		if typ, _ := r.reply(optGo); typ == repAck {
			return
		} else if typ != repInfo {
			r.t.Fatalf("GO: %s", repName(typ))
		}
	}
}

func (r *rawConn) req(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	r.write(append(b, payload...))
}

// anyReply reads a simple reply or one chunk: its cookie, error (for
// a simple reply or an error chunk), chunk type (-1 for simple) and
// payload.
func (r *rawConn) anyReply() (cookie uint64, errno Errno, typ int, done bool, payload []byte) {
	r.t.Helper()
	var m [4]byte
	r.read(m[:])
	switch binary.BigEndian.Uint32(m[:]) {
	case magicSimpleReply:
		var h [12]byte
		r.read(h[:])
		return binary.BigEndian.Uint64(h[4:]), Errno(binary.BigEndian.Uint32(h[:])), -1, true, nil
	case magicStructReply:
		var h [16]byte
		r.read(h[:])
		p := make([]byte, binary.BigEndian.Uint32(h[12:]))
		r.read(p)
		typ := binary.BigEndian.Uint16(h[2:])
		if typ&replyTypeFlagError != 0 {
			errno = Errno(binary.BigEndian.Uint32(p))
		}
		return binary.BigEndian.Uint64(h[4:]), errno, int(typ), binary.BigEndian.Uint16(h[:])&replyFlagDone != 0, p
	}
	r.t.Fatalf("reply magic %x", m)
	return
}

// expectErr reads the reply to cookie and checks its error.
func (r *rawConn) expectErr(cookie uint64, want Errno) {
	r.t.Helper()
	c, e, _, done, p := r.anyReply()
	if c != cookie || e != want || !done {
		r.t.Fatalf("reply to %d: cookie %d errno %d done %v (%q), want errno %d", cookie, c, e, done, p, want)
	}
}

// expectEOF checks that the server hung up.
func (r *rawConn) expectEOF() {
	r.t.Helper()
	if _, err := r.r.ReadByte(); !errors.Is(err, io.EOF) {
		r.t.Fatalf("server still talks: %v", err)
	}
}

func TestProtocolHandshake(t *testing.T) {
	exp := sampleExport()
	sock := serveExports(t, Options{}, map[string]Export{"disk": exp, "b": sampleExport()})
	r := rawDial(t, sock, clientFixed|clientNoZeroes)
	// Unknown options, short or longer than what the server buffers,
	// get ERR_UNSUP, and the next option is read correctly.
	r.opt(99, []byte("whatever"))
	r.expect(99, repErrUnsup)
	r.opt(100, make([]byte, maxOptionLen+1))
	r.expect(100, repErrUnsup)
	r.opt(optInfo, make([]byte, maxOptionLen+1))
	r.expect(optInfo, repErrTooBig)
	r.opt(optList, []byte("x"))
	r.expect(optList, repErrInvalid)
	r.opt(optList, nil)
	for _, name := range []string{"b", "disk"} {
		d := r.expect(optList, repServer)
		if n := binary.BigEndian.Uint32(d); string(d[4:4+n]) != name || string(d[4+n:]) != exp.desc {
			t.Errorf("LIST entry %q", d)
		}
	}
	r.expect(optList, repAck)
	r.opt(optStartTLS, nil)
	r.expect(optStartTLS, repErrPolicy)
	r.opt(optSetMetaContext, metaQuery("disk", []string{ContextAllocation}))
	r.expect(optSetMetaContext, repErrInvalid) // structured replies first
	r.opt(optInfo, infoData("nope"))
	r.expect(optInfo, repErrUnknown)
	r.opt(optInfo, infoData("disk")[:5])
	r.expect(optInfo, repErrInvalid)
	// INFO tells all and stays in the handshake.
	r.opt(optInfo, infoData("disk", infoName, infoDescription, infoBlockSize))
	seen := map[uint16][]byte{}
	for {
		typ, d := r.reply(optInfo)
		if typ == repAck {
			break
		}
		if typ != repInfo {
			t.Fatalf("INFO: %s", repName(typ))
		}
		seen[binary.BigEndian.Uint16(d)] = d[2:]
	}
	if d := seen[infoExport]; len(d) != 10 || int64(binary.BigEndian.Uint64(d)) != exp.size ||
		binary.BigEndian.Uint16(d[8:]) != FlagHasFlags|FlagReadOnly|FlagSendFlush|FlagCanMultiConn|FlagSendCache {
		t.Errorf("NBD_INFO_EXPORT %x", d)
	}
	if d := seen[infoBlockSize]; len(d) != 12 || binary.BigEndian.Uint32(d) != 1 ||
		binary.BigEndian.Uint32(d[4:]) != 64<<10 || binary.BigEndian.Uint32(d[8:]) != MaxPayload {
		t.Errorf("NBD_INFO_BLOCK_SIZE %x", d)
	}
	if string(seen[infoName]) != "disk" || string(seen[infoDescription]) != exp.desc {
		t.Errorf("name %q description %q", seen[infoName], seen[infoDescription])
	}
	// Metadata contexts: listing finds base:allocation; others are
	// ignored, not errors.
	r.opt(optStructuredReply, nil)
	r.expect(optStructuredReply, repAck)
	for _, q := range [][]string{nil, {"base:"}, {"qemu:dirty-bitmap:x", ContextAllocation}} {
		r.opt(optListMetaContext, metaQuery("disk", q))
		if d := r.expect(optListMetaContext, repMetaContext); string(d[4:]) != ContextAllocation {
			t.Errorf("LIST_META_CONTEXT %q: %q", q, d)
		}
		r.expect(optListMetaContext, repAck)
	}
	r.opt(optSetMetaContext, metaQuery("disk", []string{"qemu:dirty-bitmap:x"}))
	r.expect(optSetMetaContext, repAck)
	r.opt(optSetMetaContext, append(metaQuery("disk", nil)[:8], 0, 0, 0, 9))
	r.expect(optSetMetaContext, repErrInvalid)
	r.opt(optAbort, nil)
	r.expect(optAbort, repAck)
	r.expectEOF()
}

func TestProtocolExportName(t *testing.T) {
	exp := sampleExport()
	sock := serveExports(t, Options{}, map[string]Export{"disk": exp})
	for _, noZeroes := range []bool{false, true} {
		flags := uint32(clientFixed)
		if noZeroes {
			flags |= clientNoZeroes
		}
		r := rawDial(t, sock, flags)
		r.opt(optExportName, []byte("disk"))
		b := make([]byte, 10)
		r.read(b)
		if int64(binary.BigEndian.Uint64(b)) != exp.size {
			t.Errorf("EXPORT_NAME size %x", b)
		}
		if !noZeroes {
			z := make([]byte, exportNameZeroes)
			r.read(z)
			if !bytes.Equal(z, make([]byte, exportNameZeroes)) {
				t.Errorf("zeroes %x", z)
			}
		}
		// Simple replies now: a read gives its bytes.
		r.req(0, cmdRead, 7, 0, 4096, nil)
		c, e, typ, _, _ := r.anyReply()
		got := make([]byte, 4096)
		r.read(got)
		if c != 7 || e != 0 || typ != -1 || !bytes.Equal(got, exp.bytes()[:4096]) {
			t.Errorf("simple read: cookie %d errno %d type %d", c, e, typ)
		}
		r.req(0, cmdDisc, 8, 0, 0, nil)
		r.expectEOF()
	}
	// An unknown name ends the session: EXPORT_NAME cannot fail.
	r := rawDial(t, sock, clientFixed)
	r.opt(optExportName, []byte("nope"))
	r.expectEOF()
}

func TestProtocolRequireTLS(t *testing.T) {
	certs := makeCerts(t)
	sock := serveExports(t, Options{TLSConfig: certs.server(), RequireTLS: true}, map[string]Export{"disk": sampleExport()})
	r := rawDial(t, sock, clientFixed)
	for _, o := range []uint32{optInfo, optGo, optList, optStructuredReply, 99} {
		r.opt(o, infoData("disk"))
		r.expect(o, repErrTLSReqd)
	}
	r.opt(optStartTLS, []byte("x"))
	r.expect(optStartTLS, repErrInvalid)
	r.opt(optExportName, []byte("disk"))
	r.expectEOF()
}

func TestProtocolTransmission(t *testing.T) {
	exp := sampleExport()
	sock := serveExports(t, Options{}, map[string]Export{"disk": exp})
	r := rawDial(t, sock, clientFixed|clientNoZeroes)
	r.goStructured("disk")
	size := uint64(exp.size)
	// Writes are refused, and their payload skipped: the next request
	// is read right.
	r.req(0, cmdWrite, 1, 0, 4096, make([]byte, 4096))
	r.expectErr(1, EPERM)
	r.req(0, cmdTrim, 2, 0, 4096, nil)
	r.expectErr(2, EPERM)
	r.req(0, cmdWriteZeroes, 3, 0, 4096, nil)
	r.expectErr(3, EPERM)
	r.req(0, cmdRead, 4, size-100, 4096, nil)
	r.expectErr(4, EINVAL)
	r.req(0, cmdRead, 5, 1<<63, 1, nil)
	r.expectErr(5, EINVAL)
	r.req(0, cmdRead, 6, 0, MaxPayload+1, nil)
	r.expectErr(6, EOVERFLOW)
	r.req(cmdFlagFUA, cmdRead, 7, 0, 512, nil)
	r.expectErr(7, EINVAL)
	r.req(0, 42, 8, 0, 0, nil)
	r.expectErr(8, EINVAL)
	r.req(0, cmdFlush, 9, 0, 0, nil)
	r.expectErr(9, 0)
	r.req(0, cmdCache, 10, 0, 1<<20, nil)
	r.expectErr(10, 0)
	if n := exp.prefetches.Load(); n != 16 {
		t.Errorf("CACHE of 1 MiB prefetched %d blocks of 64 KiB, want 16", n)
	}
	r.req(0, cmdBlockStatus, 11, 0, 0, nil)
	r.expectErr(11, EINVAL)
	r.req(0, cmdBlockStatus, 12, size-4096, 8192, nil)
	r.expectErr(12, EINVAL)

	// A read over a hole: data, hole, data chunks, the last done.
	r.req(0, cmdRead, 13, 64<<10, 1<<20, nil)
	var kinds []int
	for {
		c, e, typ, done, _ := r.anyReply()
		if c != 13 || e != 0 {
			t.Fatalf("read chunk cookie %d errno %d", c, e)
		}
		kinds = append(kinds, typ)
		if done {
			break
		}
	}
	if want := []int{replyTypeOffsetData, replyTypeOffsetHole, replyTypeOffsetData}; !slices.Equal(kinds, want) {
		t.Errorf("chunk types %v, want %v", kinds, want)
	}
	// The same with DF: one data chunk, holes as zeros.
	r.req(cmdFlagDF, cmdRead, 14, 64<<10, 1<<20, nil)
	c, e, typ, done, p := r.anyReply()
	if c != 14 || e != 0 || typ != replyTypeOffsetData || !done || len(p) != 8+1<<20 ||
		!bytes.Equal(p[8:], exp.bytes()[64<<10:64<<10+1<<20]) {
		t.Errorf("DF read: cookie %d errno %d type %d done %v len %d", c, e, typ, done, len(p))
	}
	// Block status with REQ_ONE: one extent.
	r.req(cmdFlagReqOne, cmdBlockStatus, 15, 0, 1<<20, nil)
	c, _, typ, _, p = r.anyReply()
	if c != 15 || typ != replyTypeBlockStatus || len(p) != 12 || binary.BigEndian.Uint32(p[4:]) != 100<<10 {
		t.Errorf("REQ_ONE block status: %d %d %x", c, typ, p)
	}
	// Many requests at once are all answered, in whatever order.
	for i := range 20 {
		r.req(0, cmdRead, uint64(100+i), uint64(i)*4096, 4096, nil)
	}
	got := map[uint64]bool{}
	for len(got) < 20 {
		c, e, _, done, _ := r.anyReply()
		if e != 0 || c < 100 || c >= 120 {
			t.Fatalf("reply cookie %d errno %d", c, e)
		}
		if done {
			got[c] = true
		}
	}
	r.req(0, cmdDisc, 99, 0, 0, nil)
	r.expectEOF()
}

// A request with a bad magic, or a write longer than the maximum
// payload, ends the connection.
func TestProtocolViolations(t *testing.T) {
	sock := serveExports(t, Options{}, map[string]Export{"disk": sampleExport()})
	r := rawDial(t, sock, clientFixed)
	r.goStructured("disk")
	r.write(bytes.Repeat([]byte{0xee}, requestHeaderLen))
	r.expectEOF()
	r = rawDial(t, sock, clientFixed)
	r.goStructured("disk")
	r.req(0, cmdWrite, 1, 0, MaxPayload+1, nil)
	r.expectEOF()
	r = rawDial(t, sock, 1<<5) // an unknown client flag
	r.expectEOF()
	r = rawDial(t, sock, clientFixed)
	r.write(bytes.Repeat([]byte{0xee}, optionHeaderLen))
	r.expectEOF()
}
