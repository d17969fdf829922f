package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// pieceLen is the most a structured read holds in memory at once: a
// longer read goes out as several data chunks, each read just before it
// is sent.
const pieceLen = 1 << 20

// connBudget bounds the read buffers one connection holds at once.
const connBudget = 2 * MaxPayload

// request is one transmission request as sent.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
}

// parseRequest decodes a request header.
func parseRequest(h []byte) (request, error) {
	if len(h) != requestHeaderLen {
		return request{}, protoErr("request header of %d bytes", len(h))
	}
	if m := binary.BigEndian.Uint32(h); m != magicRequest {
		return request{}, protoErr("bad request magic %#x", m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(h[4:]),
		typ:    binary.BigEndian.Uint16(h[6:]),
		cookie: binary.BigEndian.Uint64(h[8:]),
		off:    binary.BigEndian.Uint64(h[16:]),
		length: binary.BigEndian.Uint32(h[24:]),
	}, nil
}

// transmit serves requests until the client disconnects: one goroutine
// reads them, Workers goroutines answer them, in any order; replies
// are whole messages written under wmu.
func (c *conn) transmit(exp Export) error {
	if err := c.setDeadline(time.Time{}); err != nil {
		return err
	}
	t := &transmission{conn: c, exp: exp, size: exp.Size()}
	t.budget.cond.L = &t.budget.mu
	t.budget.free = connBudget
	queue := make(chan request, c.srv.opts.Workers)
	var wg sync.WaitGroup
	for range c.srv.opts.Workers {
		wg.Go(func() {
			for req := range queue {
				t.handle(req)
			}
		})
	}
	err := t.readRequests(queue)
	close(queue)
	wg.Wait()
	if werr := t.werr.Load(); werr != nil && err == nil {
		err = *werr
	}
	return err
}

// transmission is the state of one connection's transmission phase.
type transmission struct {
	*conn
	exp    Export
	size   int64
	werr   atomic.Pointer[error] // first failed reply write
	budget struct {
		mu   sync.Mutex
		cond sync.Cond
		free int64
	}
}

// readRequests reads requests into queue until NBD_CMD_DISC (nil), the
// end of the connection or a protocol violation.
func (t *transmission) readRequests(queue chan<- request) error {
	var h [requestHeaderLen]byte
	for {
		if _, err := io.ReadFull(t.r, h[:]); err != nil {
			if t.werr.Load() != nil {
				return nil // the writer failed first and closed the socket
			}
			return lost("client left without NBD_CMD_DISC", err)
		}
		req, err := parseRequest(h[:])
		if err != nil {
			return err
		}
		switch req.typ {
		case cmdDisc:
			return nil
		case cmdWrite:
			// Refused, but its payload must be read to find the next
			// request. A client that sends more than the maximum
			// payload breaks the protocol.
			if req.length > MaxPayload {
				return protoErr("write of %d bytes", req.length)
			}
			if _, err := io.CopyN(io.Discard, t.r, int64(req.length)); err != nil {
				return lost("reading write payload", err)
			}
		}
		queue <- req
	}
}

// handle answers one request.
func (t *transmission) handle(req request) {
	switch req.typ {
	case cmdRead:
		t.read(req)
	case cmdBlockStatus:
		t.blockStatus(req)
	case cmdFlush:
		t.ok(req)
	case cmdCache:
		t.cache(req)
	case cmdWrite, cmdTrim, cmdWriteZeroes:
		t.fail(req, EPERM, "the export is read-only")
	default:
		t.fail(req, EINVAL, fmt.Sprintf("unknown command %d", req.typ))
	}
}

// inBounds checks a request's range against the export.
func (t *transmission) inBounds(req request) bool {
	return req.off <= uint64(t.size) && uint64(req.length) <= uint64(t.size)-req.off
}

func (t *transmission) read(req request) {
	allowed := uint16(0)
	if t.structured {
		allowed = cmdFlagDF
	}
	switch {
	case req.flags&^allowed != 0:
		t.fail(req, EINVAL, fmt.Sprintf("unknown read flags %#x", req.flags))
		return
	case req.length > MaxPayload && t.structured:
		t.fail(req, EOVERFLOW, "read longer than the maximum payload")
		return
	case req.length > MaxPayload:
		t.fail(req, EINVAL, "read longer than the maximum payload")
		return
	case !t.inBounds(req):
		t.fail(req, EINVAL, "read beyond the end of the export")
		return
	}
	off, n := int64(req.off), int64(req.length)
	if !t.structured {
		buf := t.getBuf(n)
		defer t.putBuf(buf)
		if err := t.readFull(buf, off); err != nil {
			t.send(t.simple(req.cookie, EIO), nil)
			return
		}
		t.send(t.simple(req.cookie, 0), buf)
		return
	}
	if n == 0 {
		t.send(t.chunkHeader(replyFlagDone, replyTypeNone, req.cookie, 0), nil)
		return
	}
	if req.flags&cmdFlagDF != 0 {
		t.readWhole(req)
		return
	}
	t.readPieces(req)
}

// readFull reads len(p) bytes at off, all or an error (logged).
func (t *transmission) readFull(p []byte, off int64) error {
	n, err := t.exp.ReadAt(p, off)
	if n == len(p) && (err == nil || errors.Is(err, io.EOF)) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	t.srv.logf("nbd: read of %d bytes at %d: %v", len(p), off, err)
	return &readError{n: n, err: err}
}

// readError is a read that returned n good bytes, then failed.
type readError struct {
	n   int
	err error
}

func (e *readError) Error() string { return e.err.Error() }

// readPieces answers a structured read with hole chunks for the
// export's holes and data chunks of at most pieceLen for the rest, the
// last one flagged done; a failing read ends it with an error chunk at
// the first offset that failed.
func (t *transmission) readPieces(req request) {
	off, end := int64(req.off), int64(req.off)+int64(req.length)
	finder, _ := t.exp.(DataFinder)
	var buf []byte
	defer func() {
		if buf != nil {
			t.putBuf(buf)
		}
	}()
	ds, de := int64(0), int64(0) // the data range the finder gave last
	for pos := off; pos < end; {
		if finder == nil {
			ds, de = pos, end
		} else if de <= pos {
			var err error
			if ds, de, err = finder.NextData(pos); err != nil {
				t.srv.logf("nbd: finding data at %d: %v", pos, err)
				t.send(t.errorChunk(req.cookie, EIO, pos, "cannot map the export here"), nil)
				return
			}
			if ds < pos || (ds < end && de <= ds) {
				ds, de = pos, end // a confused finder: read it all
			}
		}
		if ds > pos {
			h := min(ds, end) - pos
			flags := uint16(0)
			if pos+h == end {
				flags = replyFlagDone
			}
			b := t.chunkHeader(flags, replyTypeOffsetHole, req.cookie, holeChunkLen)
			b = binary.BigEndian.AppendUint64(b, uint64(pos))
			b = binary.BigEndian.AppendUint32(b, uint32(h))
			t.send(b, nil)
			pos += h
			continue
		}
		n := min(de, end, pos+pieceLen) - pos
		if buf == nil {
			buf = t.getBuf(min(end-off, pieceLen))
		}
		p := buf[:n]
		if err := t.readFull(p, pos); err != nil {
			var re *readError
			if errors.As(err, &re) && re.n > 0 {
				t.sendData(req.cookie, 0, pos, p[:re.n])
				pos += int64(re.n)
			}
			t.send(t.errorChunk(req.cookie, EIO, pos, "input/output error"), nil)
			return
		}
		flags := uint16(0)
		if pos+n == end {
			flags = replyFlagDone
		}
		t.sendData(req.cookie, flags, pos, p)
		pos += n
	}
}

// readWhole answers a read with NBD_CMD_FLAG_DF: one data chunk, holes
// as zeros.
func (t *transmission) readWhole(req request) {
	off := int64(req.off)
	buf := t.getBuf(int64(req.length))
	defer t.putBuf(buf)
	if err := t.readFull(buf, off); err != nil {
		// No content chunk may follow a DF error, so none precedes it.
		t.send(t.errorChunk(req.cookie, EIO, off, "input/output error"), nil)
		return
	}
	t.sendData(req.cookie, replyFlagDone, off, buf)
}

func (t *transmission) blockStatus(req request) {
	switch {
	case !t.structured || !t.metaSet:
		t.fail(req, EINVAL, "no metadata context was negotiated")
		return
	case req.flags&^cmdFlagReqOne != 0:
		t.fail(req, EINVAL, fmt.Sprintf("unknown block status flags %#x", req.flags))
		return
	case req.length == 0:
		t.fail(req, EINVAL, "block status of no bytes")
		return
	case !t.inBounds(req):
		t.fail(req, EINVAL, "block status beyond the end of the export")
		return
	}
	maxN := t.srv.opts.maxExtents
	if req.flags&cmdFlagReqOne != 0 {
		maxN = 1
	}
	exts, err := allocationExtents(t.exp, int64(req.off), int64(req.length), maxN)
	if err != nil && len(exts) == 0 {
		t.srv.logf("nbd: block status at %d: %v", req.off, err)
		t.send(t.errorChunk(req.cookie, EIO, int64(req.off), "cannot map the export here"), nil)
		return
	}
	exts = exts[:min(len(exts), maxN)]
	b := t.chunkHeader(replyFlagDone, replyTypeBlockStatus, req.cookie, uint32(4+8*len(exts)))
	b = binary.BigEndian.AppendUint32(b, contextIDAllocation)
	for _, e := range exts {
		b = binary.BigEndian.AppendUint32(b, uint32(e.Len))
		b = binary.BigEndian.AppendUint32(b, e.Flags)
	}
	t.send(b, nil)
}

// cache answers NBD_CMD_CACHE: it prefetches up to MaxPayload bytes of
// the range, block by block, if the export can.
func (t *transmission) cache(req request) {
	switch {
	case req.flags != 0:
		t.fail(req, EINVAL, fmt.Sprintf("unknown cache flags %#x", req.flags))
		return
	case !t.inBounds(req):
		t.fail(req, EINVAL, "cache beyond the end of the export")
		return
	}
	if p, ok := t.exp.(Prefetcher); ok {
		step := int64(preferredBlockSize(t.exp))
		off := int64(req.off)
		end := off + min(int64(req.length), MaxPayload)
		for pos := off - off%step; pos < end; pos += step {
			p.Prefetch(pos)
		}
	}
	t.ok(req)
}

// ok sends success for a request without payload.
func (t *transmission) ok(req request) {
	t.send(t.simple(req.cookie, 0), nil)
}

// fail sends an error for req: an error chunk with msg when structured
// replies are on, a simple reply otherwise.
func (t *transmission) fail(req request, e Errno, msg string) {
	if !t.structured {
		t.send(t.simple(req.cookie, e), nil)
		return
	}
	m := []byte(clip(msg))
	b := t.chunkHeader(replyFlagDone, replyTypeError, req.cookie, uint32(errorChunkFixedLen+len(m)))
	b = binary.BigEndian.AppendUint32(b, uint32(e))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
	t.send(append(b, m...), nil)
}

func (t *transmission) simple(cookie uint64, e Errno) []byte {
	b := make([]byte, 0, simpleReplyLen)
	b = binary.BigEndian.AppendUint32(b, magicSimpleReply)
	b = binary.BigEndian.AppendUint32(b, uint32(e))
	return binary.BigEndian.AppendUint64(b, cookie)
}

// chunkHeader starts a structured reply chunk of payload length n.
func (t *transmission) chunkHeader(flags, typ uint16, cookie uint64, n uint32) []byte {
	b := make([]byte, 0, structReplyHdrLen+32)
	b = binary.BigEndian.AppendUint32(b, magicStructReply)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return binary.BigEndian.AppendUint32(b, n)
}

// errorChunk is the final chunk of a reply that failed at off.
func (t *transmission) errorChunk(cookie uint64, e Errno, off int64, msg string) []byte {
	m := []byte(clip(msg))
	b := t.chunkHeader(replyFlagDone, replyTypeErrorOffset, cookie, uint32(errorChunkFixedLen+len(m)+errorOffsetChunkExtra))
	b = binary.BigEndian.AppendUint32(b, uint32(e))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
	b = append(b, m...)
	return binary.BigEndian.AppendUint64(b, uint64(off))
}

// sendData sends one NBD_REPLY_TYPE_OFFSET_DATA chunk.
func (t *transmission) sendData(cookie uint64, flags uint16, off int64, p []byte) {
	b := t.chunkHeader(flags, replyTypeOffsetData, cookie, uint32(8+len(p)))
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	t.send(b, p)
}

// send writes one message (head, then payload) whole. After a failed
// write the socket is closed, so the reader stops too.
func (t *transmission) send(head, payload []byte) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.werr.Load() != nil {
		return
	}
	var err error
	if len(payload) == 0 {
		_, err = t.c.Write(head)
	} else if len(payload) <= 4096 {
		// One write, one segment: small replies are the latency path.
		t.wbuf = append(append(t.wbuf[:0], head...), payload...)
		_, err = t.c.Write(t.wbuf)
	} else {
		bufs := net.Buffers{head, payload}
		_, err = bufs.WriteTo(t.c)
	}
	if err != nil {
		err = lost("writing reply", err)
		t.werr.Store(&err)
		t.raw.Close()
	}
}

// getBuf returns a buffer of n bytes once the connection's budget
// allows; putBuf gives it back.
func (t *transmission) getBuf(n int64) []byte {
	b := &t.budget
	b.mu.Lock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	b.mu.Unlock()
	return t.srv.pools.get(int(n))
}

func (t *transmission) putBuf(p []byte) {
	b := &t.budget
	b.mu.Lock()
	b.free += int64(len(p))
	b.cond.Broadcast()
	b.mu.Unlock()
	t.srv.pools.put(p)
}

// Buffers come from pools of power-of-two sizes, 4 KiB to MaxPayload.
const (
	minPoolShift = 12
	maxPoolShift = 25
)

// bufPools holds the buffers of a server's connections.
type bufPools [maxPoolShift - minPoolShift + 1]sync.Pool

func poolIndex(n int) int {
	i := 0
	for (1 << (minPoolShift + i)) < n {
		i++
	}
	return i
}

func (pools *bufPools) get(n int) []byte {
	i := poolIndex(n)
	if p, ok := pools[i].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(minPoolShift+i))
}

func (pools *bufPools) put(p []byte) {
	i := poolIndex(cap(p))
	if cap(p) != 1<<(minPoolShift+i) {
		return
	}
	p = p[:cap(p)]
	pools[i].Put(&p)
}
