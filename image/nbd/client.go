package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ClientOptions configure a Client. The zero value means "default".
type ClientOptions struct {
	// MetaContexts to select for BlockStatus: ContextAllocation,
	// ContextDirtyBitmapPrefix+NAME. The server grants those it has;
	// HasMetaContext tells which.
	MetaContexts []string
	// TLSConfig makes the client upgrade with NBD_OPT_STARTTLS before
	// any other option, and fail if the server will not. An nbds URI
	// needs TLS even without one (system roots then).
	TLSConfig *tls.Config
	// MaxInFlight bounds the requests on the wire at once; 16 when 0.
	MaxInFlight int
	// CloseTimeout bounds how long Close waits for the server to finish
	// and hang up after NBD_CMD_DISC; 5 s when 0.
	CloseTimeout time.Duration

	// noStructured skips NBD_OPT_STRUCTURED_REPLY (tests of simple
	// replies).
	noStructured bool
}

// maxOptionReply bounds an option reply the client reads: the longest
// carries a name and a description, 8 KiB with their lengths.
const maxOptionReply = 3 * maxStringLen

// Client is a connection to one export of an NBD server, read-only.
// ReadAt, BlockStatus and the extent walks are safe for concurrent use;
// requests from several goroutines share the connection, and the server
// may answer them in any order.
type Client struct {
	opts       ClientOptions
	raw        net.Conn
	c          net.Conn // raw, or TLS over it
	r          *bufio.Reader
	export     string
	size       int64
	flags      uint16
	minBlock   int64
	prefBlock  int64
	maxRead    int64
	structured bool
	contexts   map[string]uint32 // granted metadata contexts by name
	byID       map[uint32]string

	wmu     sync.Mutex // serializes requests on the socket
	mu      sync.Mutex // guards what follows
	pending map[uint64]*call
	cookie  uint64
	err     error // why the connection is dead; nil while it lives
	werr    error // a failed request write, the reason to report
	closed  bool
	sem     chan struct{}
	done    chan struct{} // closed when the reply reader has ended
}

// Dial connects to the export an NBD URI names (see URI) and negotiates
// with the server: fixed newstyle, TLS when asked, structured replies,
// the metadata contexts of opts, then NBD_OPT_GO.
func Dial(ctx context.Context, uri string, opts ClientOptions) (*Client, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if u.TLS || opts.TLSConfig != nil {
		cfg := &tls.Config{}
		if opts.TLSConfig != nil {
			cfg = opts.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.TLSHostname
		}
		if u.NoVerifyPeer {
			cfg.InsecureSkipVerify = true
		}
		opts.TLSConfig = cfg
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, u.Network, u.Address)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	return NewClient(ctx, conn, u.Export, opts)
}

// NewClient negotiates export over conn, as Dial does, and owns conn from
// then on (closing it on failure).
func NewClient(ctx context.Context, conn net.Conn, export string, opts ClientOptions) (*Client, error) {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 16
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 5 * time.Second
	}
	c := &Client{
		opts: opts, raw: conn, c: conn, r: bufio.NewReader(conn), export: export,
		minBlock: 1, prefBlock: 4096, maxRead: MaxPayload,
		contexts: map[string]uint32{}, byID: map[uint32]string{},
		pending: map[uint64]*call{}, sem: make(chan struct{}, opts.MaxInFlight),
		done: make(chan struct{}),
	}
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	err := c.handshake()
	if !stop() || ctx.Err() != nil {
		err = errors.Join(ctx.Err(), err)
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	go c.readReplies()
	return c, nil
}

// Size is the export's size in bytes.
func (c *Client) Size() int64 { return c.size }

// Export is the export's name as asked.
func (c *Client) Export() string { return c.export }

// Flags are the transmission flags the server sent (Flag...).
func (c *Client) Flags() uint16 { return c.flags }

// BlockSize is the server's preferred block size (4 KiB if it gave
// none): the natural granularity to read in.
func (c *Client) BlockSize() int64 { return c.prefBlock }

// Structured reports whether structured replies were negotiated (holes
// sent as holes, errors with offsets, block status).
func (c *Client) Structured() bool { return c.structured }

// HasMetaContext reports whether the server granted the metadata context
// name. A dirty bitmap the server does not have is not granted: check
// before trusting BlockStatus for it.
func (c *Client) HasMetaContext(name string) bool {
	_, ok := c.contexts[name]
	return ok
}

// sendOption sends one option request.
func (c *Client) sendOption(opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if _, err := c.c.Write(append(b, data...)); err != nil {
		return lost("sending "+optName(opt), err)
	}
	return nil
}

// optReply is one reply of the option haggling.
type optReply struct {
	typ  uint32
	data []byte
}

func (c *Client) readOptReply(opt uint32) (optReply, error) {
	var h [optionReplyHdrLen]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return optReply{}, lost("reply to "+optName(opt), err)
	}
	if m := binary.BigEndian.Uint64(h[:]); m != magicOptReply {
		return optReply{}, protoErr("bad option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		return optReply{}, protoErr("reply to %s while %s is pending", optName(o), optName(opt))
	}
	r := optReply{typ: binary.BigEndian.Uint32(h[12:])}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxOptionReply {
		return optReply{}, protoErr("%s reply of %d bytes", optName(opt), n)
	}
	r.data = make([]byte, n)
	if _, err := io.ReadFull(c.r, r.data); err != nil {
		return optReply{}, lost("reply to "+optName(opt), err)
	}
	return r, nil
}

// replyError turns an error reply into an error.
func replyError(opt uint32, r optReply) error {
	var sentinel error
	switch r.typ {
	case repErrUnknown:
		sentinel = ErrUnknownExport
	case repErrTLSReqd:
		sentinel = ErrTLSRequired
	case repErrShutdown:
		sentinel = ErrShutdown
	case repErrUnsup, repErrPolicy, repErrPlatform:
		sentinel = ErrUnsupported
	default:
		if r.typ&repFlagError == 0 {
			return protoErr("unexpected %s reply to %s", repName(r.typ), optName(opt))
		}
		sentinel = ErrProtocol
	}
	msg := ""
	if len(r.data) > 0 && validString(r.data) {
		msg = ": " + string(r.data)
	}
	return fmt.Errorf("nbd: %s: server says %s%s: %w", optName(opt), repName(r.typ), msg, sentinel)
}

// simpleOption sends an option that takes no data and expects ACK.
func (c *Client) simpleOption(opt uint32) error {
	if err := c.sendOption(opt, nil); err != nil {
		return err
	}
	r, err := c.readOptReply(opt)
	if err != nil {
		return err
	}
	if r.typ != repAck {
		return replyError(opt, r)
	}
	return nil
}

func (c *Client) handshake() error {
	var h [18]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return lost("reading the server's greeting", err)
	}
	if m := binary.BigEndian.Uint64(h[:]); m != magicInit {
		return protoErr("bad greeting magic %#x", m)
	}
	if m := binary.BigEndian.Uint64(h[8:]); m != magicOpt {
		return fmt.Errorf("nbd: the server speaks the oldstyle handshake only: %w", ErrUnsupported)
	}
	hflags := binary.BigEndian.Uint16(h[16:])
	if hflags&handshakeFixed == 0 {
		return fmt.Errorf("nbd: the server does not speak fixed newstyle: %w", ErrUnsupported)
	}
	cflags := uint32(clientFixed)
	noZeroes := hflags&handshakeNoZeroes != 0
	if noZeroes {
		cflags |= clientNoZeroes
	}
	if _, err := c.c.Write(binary.BigEndian.AppendUint32(nil, cflags)); err != nil {
		return lost("sending client flags", err)
	}
	if c.opts.TLSConfig != nil {
		if err := c.simpleOption(optStartTLS); err != nil {
			return fmt.Errorf("nbd: TLS is required: %w", err)
		}
		tc := tls.Client(c.raw, c.opts.TLSConfig)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("nbd: TLS handshake: %w", err)
		}
		c.c, c.r = tc, bufio.NewReader(tc)
	}
	if !c.opts.noStructured {
		switch err := c.simpleOption(optStructuredReply); {
		case err == nil:
			c.structured = true
		case !errors.Is(err, ErrUnsupported):
			return err
		}
	}
	if c.structured && len(c.opts.MetaContexts) > 0 {
		if err := c.setMetaContexts(); err != nil {
			return err
		}
	}
	return c.optGo(noZeroes)
}

// metaQuery encodes the data of a metadata context option.
func metaQuery(export string, queries []string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

func (c *Client) setMetaContexts() error {
	for _, q := range c.opts.MetaContexts {
		if !validString([]byte(q)) {
			return fmt.Errorf("nbd: metadata context %q is not a valid name", q)
		}
	}
	if err := c.sendOption(optSetMetaContext, metaQuery(c.export, c.opts.MetaContexts)); err != nil {
		return err
	}
	for {
		r, err := c.readOptReply(optSetMetaContext)
		if err != nil {
			return err
		}
		switch r.typ {
		case repMetaContext:
			if len(r.data) < 5 || !validString(r.data[4:]) {
				return protoErr("malformed metadata context reply")
			}
			id, name := binary.BigEndian.Uint32(r.data), string(r.data[4:])
			if _, dup := c.byID[id]; dup {
				return protoErr("metadata context ID %d given twice", id)
			}
			c.contexts[name], c.byID[id] = id, name
			continue
		case repAck:
			return nil
		}
		// Whatever was granted before the error does not count.
		clear(c.contexts)
		clear(c.byID)
		err = replyError(optSetMetaContext, r)
		if errors.Is(err, ErrUnsupported) || (r.typ == repErrInvalid) {
			return nil // no contexts: HasMetaContext says so
		}
		return err
	}
}

func (c *Client) optGo(noZeroes bool) error {
	data := binary.BigEndian.AppendUint32(nil, uint32(len(c.export)))
	data = append(data, c.export...)
	data = binary.BigEndian.AppendUint16(data, 1)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	if err := c.sendOption(optGo, data); err != nil {
		return err
	}
	gotExport := false
	for {
		r, err := c.readOptReply(optGo)
		if err != nil {
			return err
		}
		switch r.typ {
		case repInfo:
			if err := c.info(r.data, &gotExport); err != nil {
				return err
			}
			continue
		case repAck:
			if !gotExport {
				return protoErr("NBD_OPT_GO succeeded without NBD_INFO_EXPORT")
			}
			return nil
		case repErrUnsup:
			return c.exportName(noZeroes)
		}
		return replyError(optGo, r)
	}
}

// info takes in one NBD_REP_INFO.
func (c *Client) info(d []byte, gotExport *bool) error {
	if len(d) < 2 {
		return protoErr("empty NBD_REP_INFO")
	}
	switch binary.BigEndian.Uint16(d) {
	case infoExport:
		if len(d) != 12 {
			return protoErr("NBD_INFO_EXPORT of %d bytes", len(d))
		}
		return c.setExport(binary.BigEndian.Uint64(d[2:]), binary.BigEndian.Uint16(d[10:]), gotExport)
	case infoBlockSize:
		if len(d) != 14 {
			return protoErr("NBD_INFO_BLOCK_SIZE of %d bytes", len(d))
		}
		minB, pref, maxP := binary.BigEndian.Uint32(d[2:]), binary.BigEndian.Uint32(d[6:]), binary.BigEndian.Uint32(d[10:])
		pow2 := func(v uint32) bool { return v != 0 && v&(v-1) == 0 }
		if !pow2(minB) || minB > 64<<10 || !pow2(pref) || pref < minB || maxP < minB {
			return protoErr("bad block sizes min %d preferred %d max %d", minB, pref, maxP)
		}
		c.minBlock, c.prefBlock = int64(minB), int64(pref)
		// Whole multiples of the minimum block, and never more than
		// the protocol's default however much the server allows.
		c.maxRead = min(int64(maxP), MaxPayload) / int64(minB) * int64(minB)
	}
	return nil
}

func (c *Client) setExport(size uint64, flags uint16, gotExport *bool) error {
	if size > 1<<62 {
		return protoErr("export size %d", size)
	}
	if flags&FlagHasFlags == 0 {
		return protoErr("transmission flags %#x lack NBD_FLAG_HAS_FLAGS", flags)
	}
	c.size, c.flags, *gotExport = int64(size), flags, true
	return nil
}

// exportName enters transmission with the old NBD_OPT_EXPORT_NAME, for
// servers without NBD_OPT_GO. Metadata contexts are kept: they were set
// for this same name.
func (c *Client) exportName(noZeroes bool) error {
	if err := c.sendOption(optExportName, []byte(c.export)); err != nil {
		return err
	}
	n := 10
	if !noZeroes {
		n += exportNameZeroes
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("nbd: the server hung up on export %q: %w", c.export, ErrUnknownExport)
		}
		return lost("export reply", err)
	}
	var got bool
	return c.setExport(binary.BigEndian.Uint64(b), binary.BigEndian.Uint16(b[8:]), &got)
}
