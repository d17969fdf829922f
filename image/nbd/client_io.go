package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
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
