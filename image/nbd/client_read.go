package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

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
