package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// maxPieces bounds the distinct content chunks of one read reply that
// the client tracks (adjacent ones merge): more means a hostile server.
const maxPieces = 4096

// maxErrorChunk bounds an error chunk: fixed fields, a message of at
// most 4 KiB, an offset.
const maxErrorChunk = errorChunkFixedLen + maxStringLen + errorOffsetChunkExtra

// call is one request in flight.
type call struct {
	typ    uint16
	off    int64
	length int64
	done   chan struct{}

	// Written by the reply reader only, read after done is closed.
	buf    []byte     // a read's destination, len == length
	pieces [][2]int64 // a read's covered ranges, sorted and merged
	err    error      // the first error reply
	status map[string][]Extent

	// abandoned is set, under mu, by a caller whose context ended: the
	// reader then discards the data instead of writing into buf.
	mu        chanMutex
	abandoned bool
}

// chanMutex is a mutex whose Lock can give up when a context ends.
type chanMutex chan struct{}

func newChanMutex() chanMutex { return make(chanMutex, 1) }
func (m chanMutex) Lock()     { m <- struct{}{} }
func (m chanMutex) Unlock()   { <-m }

// request sends a request and waits for its whole reply.
func (c *Client) request(ctx context.Context, cl *call, typ, flags uint16) error {
	cl.typ, cl.done, cl.mu = typ, make(chan struct{}), newChanMutex()
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()
	c.mu.Lock()
	if c.err != nil || c.closed {
		err := c.err
		c.mu.Unlock()
		if err == nil {
			// Nothing may follow NBD_CMD_DISC.
			err = fmt.Errorf("nbd: client closed: %w", ErrDisconnected)
		}
		return err
	}
	c.cookie++
	cookie := c.cookie
	c.pending[cookie] = cl
	c.mu.Unlock()

	h := make([]byte, 0, requestHeaderLen)
	h = binary.BigEndian.AppendUint32(h, magicRequest)
	h = binary.BigEndian.AppendUint16(h, flags)
	h = binary.BigEndian.AppendUint16(h, typ)
	h = binary.BigEndian.AppendUint64(h, cookie)
	h = binary.BigEndian.AppendUint64(h, uint64(cl.off))
	h = binary.BigEndian.AppendUint32(h, uint32(cl.length))
	c.wmu.Lock()
	_, err := c.c.Write(h)
	c.wmu.Unlock()
	if err != nil {
		// The reply reader fails every request, this one included, once
		// the closed socket stops it.
		c.mu.Lock()
		if c.werr == nil {
			c.werr = fmt.Errorf("sending a request: %w", err)
		}
		c.mu.Unlock()
		c.raw.Close()
	}
	select {
	case <-cl.done:
		return cl.err
	case <-ctx.Done():
		select {
		case cl.mu <- struct{}{}: // the reader is not writing into buf
			cl.abandoned = true
			cl.mu.Unlock()
			return ctx.Err()
		case <-cl.done:
			return cl.err
		}
	}
}

// fail ends the connection: every request in flight, and every later
// one, fails with ErrDisconnected (and ErrProtocol when that is why).
// Only the reply reader calls it, so no reply is being handled then.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		err = c.werr
	}
	if c.closed {
		c.err = fmt.Errorf("nbd: client closed: %w", ErrDisconnected)
	} else if errors.Is(err, ErrProtocol) {
		c.err = fmt.Errorf("%w: %w", ErrDisconnected, err)
	} else {
		c.err = fmt.Errorf("nbd: %w: %w", ErrDisconnected, err)
	}
	c.raw.Close()
	for k, cl := range c.pending {
		delete(c.pending, k)
		cl.err = c.err
		close(cl.done)
	}
}

// readReplies reads replies until the connection ends, handing each to
// its request.
func (c *Client) readReplies() {
	defer close(c.done)
	for {
		if err := c.readReply(); err != nil {
			c.fail(err)
			return
		}
	}
}

// take returns the pending call of cookie. It stays pending until its
// reply is complete, so that a connection failing in the middle of a
// reply fails it too.
func (c *Client) take(cookie uint64) (*call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.pending[cookie]
	if !ok {
		return nil, protoErr("reply for cookie %d, which is not in flight", cookie)
	}
	return cl, nil
}

// complete ends cookie's call, whose reply has fully arrived.
func (c *Client) complete(cookie uint64, cl *call) {
	c.mu.Lock()
	delete(c.pending, cookie)
	c.mu.Unlock()
	close(cl.done)
}

func (c *Client) readReply() error {
	var m [4]byte
	if _, err := io.ReadFull(c.r, m[:]); err != nil {
		return err
	}
	switch binary.BigEndian.Uint32(m[:]) {
	case magicSimpleReply:
		return c.readSimple()
	case magicStructReply:
		if !c.structured {
			return protoErr("structured reply, which was not negotiated")
		}
		return c.readChunk()
	}
	return protoErr("bad reply magic %#x", m)
}

func (c *Client) readSimple() error {
	var h [12]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return unexpected(err)
	}
	errno, cookie := Errno(binary.BigEndian.Uint32(h[:])), binary.BigEndian.Uint64(h[4:])
	cl, err := c.take(cookie)
	if err != nil {
		return err
	}
	if errno != 0 {
		cl.err = &Error{Errno: errno, Offset: -1}
	} else if cl.typ == cmdRead {
		if err := c.readInto(cl, 0, cl.length); err != nil {
			return err
		}
	} else if cl.typ == cmdBlockStatus {
		return protoErr("simple reply to a block status request")
	}
	c.complete(cookie, cl)
	return nil
}

// readInto reads n bytes of payload into cl's buffer at pos, or
// discards them if its caller left.
func (c *Client) readInto(cl *call, pos, n int64) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.abandoned {
		_, err := io.CopyN(io.Discard, c.r, n)
		return unexpected(err)
	}
	_, err := io.ReadFull(c.r, cl.buf[pos:pos+n])
	return unexpected(err)
}

// unexpected turns the end of the stream inside a message into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (c *Client) readChunk() error {
	var h [16]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return unexpected(err)
	}
	flags, typ := binary.BigEndian.Uint16(h[:]), binary.BigEndian.Uint16(h[2:])
	cookie, n := binary.BigEndian.Uint64(h[4:]), int64(binary.BigEndian.Uint32(h[12:]))
	done := flags&replyFlagDone != 0
	cl, err := c.take(cookie)
	if err != nil {
		return err
	}
	switch {
	case typ == replyTypeNone:
		if n != 0 || !done {
			return protoErr("NBD_REPLY_TYPE_NONE of %d bytes, done=%v", n, done)
		}
	case typ == replyTypeOffsetData && cl.typ == cmdRead:
		if err := c.offsetData(cl, n); err != nil {
			return err
		}
	case typ == replyTypeOffsetHole && cl.typ == cmdRead:
		if err := c.offsetHole(cl, n); err != nil {
			return err
		}
	case typ == replyTypeBlockStatus && cl.typ == cmdBlockStatus:
		if err := c.blockStatusChunk(cl, n); err != nil {
			return err
		}
	case typ&replyTypeFlagError != 0:
		if err := c.errorChunk(cl, typ, n); err != nil {
			return err
		}
	default:
		return protoErr("reply chunk type %d to command %d", typ, cl.typ)
	}
	if done {
		if err := c.finish(cl); err != nil {
			return err
		}
		c.complete(cookie, cl)
	}
	return nil
}

// finish checks a complete structured reply: a server that claims
// success without the whole answer is broken, and the connection ends.
func (c *Client) finish(cl *call) error {
	if cl.err != nil {
		return nil
	}
	switch cl.typ {
	case cmdRead:
		if cl.length > 0 && (len(cl.pieces) != 1 || cl.pieces[0] != [2]int64{0, cl.length}) {
			return protoErr("read reply covers %v of [0, %d)", cl.pieces, cl.length)
		}
	case cmdBlockStatus:
		for name := range c.contexts {
			if len(cl.status[name]) == 0 {
				return protoErr("block status reply without context %s", name)
			}
		}
	}
	return nil
}

// cover records that [s, e) of a read (request-relative) arrived; it
// fails on an overlap and on too many separate pieces.
func (cl *call) cover(s, e int64) error {
	i, _ := slices.BinarySearchFunc(cl.pieces, s, func(p [2]int64, v int64) int {
		switch {
		case p[0] < v:
			return -1
		case p[0] > v:
			return 1
		}
		return 0
	})
	if (i > 0 && cl.pieces[i-1][1] > s) || (i < len(cl.pieces) && cl.pieces[i][0] < e) {
		return protoErr("read reply chunks overlap at %d", cl.off+s)
	}
	switch {
	case i > 0 && cl.pieces[i-1][1] == s && i < len(cl.pieces) && cl.pieces[i][0] == e:
		cl.pieces[i-1][1] = cl.pieces[i][1]
		cl.pieces = slices.Delete(cl.pieces, i, i+1)
	case i > 0 && cl.pieces[i-1][1] == s:
		cl.pieces[i-1][1] = e
	case i < len(cl.pieces) && cl.pieces[i][0] == e:
		cl.pieces[i][0] = s
	default:
		if len(cl.pieces) >= maxPieces {
			return protoErr("read reply in more than %d pieces", maxPieces)
		}
		cl.pieces = slices.Insert(cl.pieces, i, [2]int64{s, e})
	}
	return nil
}

// span checks that [off, off+n) (absolute) lies in cl's request and
// returns it request-relative.
func (cl *call) span(off uint64, n int64) (int64, error) {
	if off < uint64(cl.off) || off-uint64(cl.off) > uint64(cl.length) || n > cl.length-int64(off-uint64(cl.off)) {
		return 0, protoErr("chunk [%d, +%d) outside the request [%d, +%d)", off, n, cl.off, cl.length)
	}
	return int64(off - uint64(cl.off)), nil
}

func (c *Client) offsetData(cl *call, n int64) error {
	if n < 9 {
		return protoErr("data chunk of %d bytes", n)
	}
	var o [8]byte
	if _, err := io.ReadFull(c.r, o[:]); err != nil {
		return unexpected(err)
	}
	s, err := cl.span(binary.BigEndian.Uint64(o[:]), n-8)
	if err != nil {
		return err
	}
	if err := cl.cover(s, s+n-8); err != nil {
		return err
	}
	return c.readInto(cl, s, n-8)
}

func (c *Client) offsetHole(cl *call, n int64) error {
	if n != holeChunkLen {
		return protoErr("hole chunk of %d bytes", n)
	}
	var b [holeChunkLen]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		return unexpected(err)
	}
	hn := int64(binary.BigEndian.Uint32(b[8:]))
	if hn == 0 {
		return protoErr("empty hole chunk")
	}
	s, err := cl.span(binary.BigEndian.Uint64(b[:]), hn)
	if err != nil {
		return err
	}
	if err := cl.cover(s, s+hn); err != nil {
		return err
	}
	cl.mu.Lock()
	if !cl.abandoned {
		clear(cl.buf[s : s+hn])
	}
	cl.mu.Unlock()
	return nil
}

func (c *Client) blockStatusChunk(cl *call, n int64) error {
	if n < 12 || (n-4)%8 != 0 || n > 4+8*maxDescriptorChunk {
		return protoErr("block status chunk of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return unexpected(err)
	}
	name, ok := c.byID[binary.BigEndian.Uint32(b)]
	if !ok {
		return protoErr("block status for context ID %d, which was not granted", binary.BigEndian.Uint32(b))
	}
	if _, dup := cl.status[name]; dup {
		return protoErr("two block status chunks for context %s", name)
	}
	exts := make([]Extent, 0, (n-4)/8)
	pos := cl.off
	for d := b[4:]; len(d) > 0; d = d[8:] {
		l := int64(binary.BigEndian.Uint32(d))
		if l == 0 {
			return protoErr("empty extent in block status")
		}
		exts = append(exts, Extent{Off: pos, Len: l, Flags: binary.BigEndian.Uint32(d[4:])})
		pos += l
	}
	// Every extent but the last must start inside the request.
	if k := len(exts); k > 1 && exts[k-1].Off >= cl.off+cl.length {
		return protoErr("block status extents run past the request")
	}
	if cl.status == nil {
		cl.status = map[string][]Extent{}
	}
	cl.status[name] = exts
	return nil
}

func (c *Client) errorChunk(cl *call, typ uint16, n int64) error {
	if n < errorChunkFixedLen || n > maxErrorChunk {
		return protoErr("error chunk of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return unexpected(err)
	}
	e := &Error{Errno: Errno(binary.BigEndian.Uint32(b)), Offset: -1}
	ml := int64(binary.BigEndian.Uint16(b[4:]))
	if ml > n-errorChunkFixedLen {
		return protoErr("error message longer than its chunk")
	}
	if msg := b[6 : 6+ml]; validString(msg) {
		e.Message = string(msg)
	}
	if e.Errno == 0 {
		e.Errno = EINVAL // an error chunk must carry one
	}
	if typ == replyTypeErrorOffset {
		if n != errorChunkFixedLen+ml+errorOffsetChunkExtra {
			return protoErr("error offset chunk of %d bytes", n)
		}
		off := binary.BigEndian.Uint64(b[6+ml:])
		if _, err := cl.span(off, 0); err != nil {
			return err
		}
		e.Offset = int64(off)
	}
	if cl.err == nil {
		cl.err = e
	}
	return nil
}

// ReadAt reads len(p) bytes at off. Reads longer than the server's
// maximum go out as several requests at once. Safe for concurrent use.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt that gives up when ctx ends. A failed read
// returns how many bytes from off arrived before the first failure.
func (c *Client) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd: read at negative offset %d", off)
	}
	if off >= c.size {
		return 0, io.EOF
	}
	var eof error
	if rest := c.size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := off + int64(len(p))
	mb := c.minBlock
	// With a minimum block size, unaligned ends go through a bounce
	// buffer; the export's own end may be unaligned and is asked as is.
	bs, be := off, end
	if r := off % mb; r != 0 {
		bs = min(off-r+mb, end)
	}
	if end < c.size {
		be = max(end-end%mb, bs)
	}
	n := 0
	if bs > off {
		m, err := c.readBounce(ctx, p[:bs-off], off)
		if n += m; err != nil {
			return n, err
		}
	}
	if be > bs {
		m, err := c.readAligned(ctx, p[bs-off:be-off], bs)
		if n += m; err != nil {
			return n, err
		}
	}
	if end > be {
		m, err := c.readBounce(ctx, p[be-off:], be)
		if n += m; err != nil {
			return n, err
		}
	}
	return n, eof
}

// readBounce reads what of p lies in the minimum block holding off,
// through a buffer of that block.
func (c *Client) readBounce(ctx context.Context, p []byte, off int64) (int, error) {
	start := off - off%c.minBlock
	end := min(start+c.minBlock, c.size)
	b := make([]byte, end-start)
	if _, err := c.readAligned(ctx, b, start); err != nil {
		return 0, err
	}
	return copy(p, b[off-start:]), nil
}

// readAligned reads p at off in pieces of at most maxRead, concurrently.
func (c *Client) readAligned(ctx context.Context, p []byte, off int64) (int, error) {
	if int64(len(p)) <= c.maxRead {
		cl := &call{off: off, length: int64(len(p)), buf: p}
		if err := c.request(ctx, cl, cmdRead, 0); err != nil {
			return 0, fmt.Errorf("nbd: read of %d bytes at %d: %w", len(p), off, err)
		}
		return len(p), nil
	}
	k := (int64(len(p)) + c.maxRead - 1) / c.maxRead
	errs := make([]error, k)
	done := make(chan struct{})
	for i := range k {
		go func() {
			defer func() { done <- struct{}{} }()
			s := i * c.maxRead
			e := min(s+c.maxRead, int64(len(p)))
			_, errs[i] = c.readAligned(ctx, p[s:e], off+s)
		}()
	}
	for range k {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			return int(int64(i) * c.maxRead), err
		}
	}
	return len(p), nil
}

// BlockStatus asks the server once about [off, off+length) and returns
// the extents of each granted metadata context, each list starting at
// off. The server may cover less than asked (ask again from the end of
// what it gave), or, with its last extent, more. length is cut to what
// one request can carry (32 bits, whole minimum blocks) and to the
// export's end; with one, every context answers with one extent.
func (c *Client) BlockStatus(ctx context.Context, off, length int64, one bool) (map[string][]Extent, error) {
	if len(c.contexts) == 0 {
		return nil, fmt.Errorf("nbd: block status: no metadata context was granted: %w", ErrUnsupported)
	}
	if off < 0 || off >= c.size || length <= 0 {
		return nil, fmt.Errorf("nbd: block status of [%d, +%d) in an export of %d bytes", off, length, c.size)
	}
	length = min(length, c.size-off, maxBlockLen/c.minBlock*c.minBlock)
	if off+length < c.size && length > c.minBlock {
		length -= length % c.minBlock
	}
	flags := uint16(0)
	if one {
		flags = cmdFlagReqOne
	}
	cl := &call{off: off, length: length}
	if err := c.request(ctx, cl, cmdBlockStatus, flags); err != nil {
		return nil, fmt.Errorf("nbd: block status at %d: %w", off, err)
	}
	if one {
		for name, exts := range cl.status {
			if len(exts) != 1 || exts[0].Len > length {
				return nil, fmt.Errorf("nbd: block status at %d: context %s gave %d extents to a one-extent request: %w", off, name, len(exts), ErrProtocol)
			}
		}
	}
	return cl.status, nil
}

// errStopWalk ends a walk early without error.
var errStopWalk = errors.New("stop walk")

// WalkExtents calls fn with the extents of metadata context name that
// cover [off, off+length), in order, clipped to the range, adjacent ones
// of equal flags merged, asking the server as often as needed (servers
// answer in parts; one request covers at most 4 GiB). An error from fn
// stops the walk and is returned.
func (c *Client) WalkExtents(ctx context.Context, name string, off, length int64, fn func(Extent) error) error {
	if !c.HasMetaContext(name) {
		return fmt.Errorf("nbd: metadata context %s was not granted by the server: %w", name, ErrUnsupported)
	}
	end := min(off+length, c.size)
	var cur Extent // pending merged extent, Len 0 when none
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := c.BlockStatus(ctx, pos, end-pos, false)
		if err != nil {
			return err
		}
		for _, e := range st[name] {
			e.Len = min(e.End(), end) - e.Off
			if e.Len <= 0 {
				break
			}
			if cur.Len > 0 && cur.Flags == e.Flags && cur.End() == e.Off {
				cur.Len += e.Len
			} else {
				if cur.Len > 0 {
					if err := fn(cur); err != nil {
						return err
					}
				}
				cur = e
			}
			pos = e.End()
		}
	}
	if cur.Len > 0 {
		return fn(cur)
	}
	return nil
}

// Extents returns the extents WalkExtents would give.
func (c *Client) Extents(ctx context.Context, name string, off, length int64) ([]Extent, error) {
	var out []Extent
	err := c.WalkExtents(ctx, name, off, length, func(e Extent) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// NextData makes a Client an image.Source: the first range [start, end)
// at or after off that base:allocation does not report as reading zeros,
// or (Size(), Size()). Without base:allocation everything is data.
func (c *Client) NextData(off int64) (start, end int64, err error) {
	off = max(off, 0)
	if off >= c.size {
		return c.size, c.size, nil
	}
	if !c.HasMetaContext(ContextAllocation) {
		return off, c.size, nil
	}
	start, end = -1, -1
	err = c.WalkExtents(context.Background(), ContextAllocation, off, c.size-off, func(e Extent) error {
		data := e.Flags&StateZero == 0
		switch {
		case data && start < 0:
			start, end = e.Off, e.End()
		case data:
			end = e.End()
		case start >= 0:
			return errStopWalk
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return 0, 0, err
	}
	if start < 0 {
		return c.size, c.size, nil
	}
	return start, end, nil
}

// Close ends the session: it sends NBD_CMD_DISC, lets the server answer
// the requests still in flight and hang up (within CloseTimeout), and
// closes the connection. Requests after Close fail with ErrDisconnected.
func (c *Client) Close() error {
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	alive := c.err == nil
	c.mu.Unlock()
	if first && alive {
		h := make([]byte, 0, requestHeaderLen)
		h = binary.BigEndian.AppendUint32(h, magicRequest)
		h = binary.BigEndian.AppendUint16(h, 0)
		h = binary.BigEndian.AppendUint16(h, cmdDisc)
		h = append(h, make([]byte, requestHeaderLen-8)...)
		c.wmu.Lock()
		_, err := c.c.Write(h)
		c.wmu.Unlock()
		if err == nil {
			select {
			case <-c.done:
			case <-time.After(c.opts.CloseTimeout):
			}
		}
	}
	c.c.Close()
	<-c.done
	return nil
}
