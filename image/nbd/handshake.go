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
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// maxOptionLen bounds the option data the server reads into memory: a
// name is at most 4 KiB, and a few metadata queries fit many times over.
// Longer options are skipped without being buffered.
const maxOptionLen = 64 << 10

// contextIDAllocation is the metadata context ID of base:allocation.
const contextIDAllocation = 1

// conn is the server's side of one connection.
type conn struct {
	srv *Server
	ctx context.Context
	raw net.Conn // the socket
	c   net.Conn // raw, or TLS over it
	r   *bufio.Reader

	mu   sync.Mutex // orders deadline changes against shutdown
	shut atomic.Bool

	tls        bool
	structured bool
	metaSet    bool   // the last SET_META_CONTEXT selected base:allocation
	metaName   string // ... for this export
	wmu        sync.Mutex
	wbuf       []byte // small replies are built here, under wmu
}

// shutdown makes blocked reads return at once and bounds the writes
// still to come; called when the server's context is done.
func (c *conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shut.Store(true)
	c.raw.SetReadDeadline(time.Now())
	c.raw.SetWriteDeadline(time.Now().Add(c.srv.opts.ShutdownGrace))
}

func (c *conn) isShutdown() bool { return c.shut.Load() }

// setDeadline sets the socket's deadline unless a shutdown began (whose
// deadlines win).
func (c *conn) setDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut.Load() {
		return ErrShutdown
	}
	return c.raw.SetDeadline(t)
}

// option is one option request of the handshake.
type option struct {
	typ  uint32
	data []byte // nil when the data was longer than maxOptionLen and skipped
	n    uint32 // length as sent
}

// handshake runs the fixed newstyle negotiation. It returns the export
// chosen for transmission, or nil when the client aborted.
func (c *conn) handshake() (Export, error) {
	if t := c.srv.opts.HandshakeTimeout; t > 0 {
		if err := c.setDeadline(time.Now().Add(t)); err != nil {
			return nil, err
		}
	}
	c.r = bufio.NewReader(c.c)
	hello := binary.BigEndian.AppendUint64(nil, magicInit)
	hello = binary.BigEndian.AppendUint64(hello, magicOpt)
	hello = binary.BigEndian.AppendUint16(hello, handshakeFixed|handshakeNoZeroes)
	if _, err := c.c.Write(hello); err != nil {
		return nil, lost("handshake", err)
	}
	var fb [4]byte
	if _, err := io.ReadFull(c.r, fb[:]); err != nil {
		return nil, lost("handshake: client flags", err)
	}
	flags := binary.BigEndian.Uint32(fb[:])
	if flags&^(clientFixed|clientNoZeroes) != 0 {
		return nil, protoErr("unknown client flags %#x", flags)
	}
	if flags&clientFixed == 0 && c.srv.opts.RequireTLS {
		// Without fixed newstyle there is no STARTTLS.
		return nil, protoErr("client does not speak fixed newstyle, and TLS is required")
	}
	noZeroes := flags&clientNoZeroes != 0
	for {
		o, err := c.readOption()
		if err != nil {
			return nil, err
		}
		exp, done, err := c.handleOption(o, noZeroes)
		if err != nil || done {
			return exp, err
		}
	}
}

// readOption reads one option; data longer than maxOptionLen is skipped.
func (c *conn) readOption() (option, error) {
	var h [optionHeaderLen]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return option{}, lost("client left during the handshake", err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicOpt {
		return option{}, protoErr("bad option magic %#x", m)
	}
	o := option{typ: binary.BigEndian.Uint32(h[8:]), n: binary.BigEndian.Uint32(h[12:])}
	if o.n > maxOptionLen {
		if _, err := io.CopyN(io.Discard, c.r, int64(o.n)); err != nil {
			return option{}, lost("skipping option data", err)
		}
		return o, nil
	}
	o.data = make([]byte, o.n)
	if _, err := io.ReadFull(c.r, o.data); err != nil {
		return option{}, lost("reading option data", err)
	}
	return o, nil
}

// reply sends one option reply.
func (c *conn) reply(opt, typ uint32, data []byte) error {
	b := make([]byte, 0, optionReplyHdrLen+len(data))
	b = binary.BigEndian.AppendUint64(b, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if _, err := c.c.Write(b); err != nil {
		return lost("option reply", err)
	}
	return nil
}

// replyErr sends an error reply with a message for people.
func (c *conn) replyErr(opt, typ uint32, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > maxStringLen {
		msg = msg[:maxStringLen]
	}
	return c.reply(opt, typ, []byte(msg))
}

// handleOption answers one option. done means the handshake is over:
// with an export to transmit, or nil after NBD_OPT_ABORT.
func (c *conn) handleOption(o option, noZeroes bool) (exp Export, done bool, err error) {
	if c.srv.opts.RequireTLS && !c.tls && o.typ != optStartTLS && o.typ != optAbort {
		if o.typ == optExportName {
			return nil, true, protoErr("NBD_OPT_EXPORT_NAME before TLS, which is required")
		}
		return nil, false, c.replyErr(o.typ, repErrTLSReqd, "TLS is required: send NBD_OPT_STARTTLS first")
	}
	if !knownOption(o.typ) {
		return nil, false, c.replyErr(o.typ, repErrUnsup, "%s is not supported", optName(o.typ))
	}
	if o.data == nil && o.n > 0 {
		if o.typ == optExportName {
			return nil, true, protoErr("export name of %d bytes", o.n)
		}
		return nil, false, c.replyErr(o.typ, repErrTooBig, "option data of %d bytes is too long", o.n)
	}
	switch o.typ {
	case optExportName:
		return c.optExportName(o, noZeroes)
	case optAbort:
		// The client may hang up without reading the ACK.
		c.reply(o.typ, repAck, nil)
		return nil, true, nil
	case optList:
		return nil, false, c.optList(o)
	case optStartTLS:
		return nil, false, c.optStartTLS(o)
	case optInfo, optGo:
		return c.optInfoGo(o)
	case optStructuredReply:
		if len(o.data) != 0 {
			return nil, false, c.replyErr(o.typ, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		}
		if c.structured {
			return nil, false, c.replyErr(o.typ, repErrInvalid, "structured replies are already negotiated")
		}
		c.structured = true
		return nil, false, c.reply(o.typ, repAck, nil)
	case optListMetaContext, optSetMetaContext:
		return nil, false, c.optMetaContext(o)
	}
	return nil, false, c.replyErr(o.typ, repErrUnsup, "%s is not supported", optName(o.typ))
}

// knownOption reports whether the server implements option typ.
func knownOption(typ uint32) bool {
	switch typ {
	case optExportName, optAbort, optList, optStartTLS, optInfo, optGo,
		optStructuredReply, optListMetaContext, optSetMetaContext:
		return true
	}
	return false
}

// validString reports whether s is a protocol string: UTF-8, no NUL,
// at most 4 KiB.
func validString(s []byte) bool {
	if len(s) > maxStringLen || !utf8.Valid(s) {
		return false
	}
	for _, b := range s {
		if b == 0 {
			return false
		}
	}
	return true
}

// lookup asks the server's Lookup for an export.
func (c *conn) lookup(name string) (Export, error) {
	e, err := c.srv.opts.Lookup(c.ctx, name)
	if err == nil && e == nil {
		err = ErrUnknownExport
	}
	if err != nil && !errors.Is(err, ErrUnknownExport) {
		c.srv.logf("nbd: export %q: %v", name, err)
	}
	return e, err
}

func (c *conn) optExportName(o option, noZeroes bool) (Export, bool, error) {
	if !validString(o.data) {
		return nil, true, protoErr("export name is not a valid string")
	}
	name := string(o.data)
	exp, err := c.lookup(name)
	if err != nil {
		// This option cannot fail: the session ends.
		return nil, true, fmt.Errorf("nbd: export %q: %w", name, err)
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.Size()))
	b = binary.BigEndian.AppendUint16(b, c.transmissionFlags())
	if !noZeroes {
		b = append(b, make([]byte, exportNameZeroes)...)
	}
	if _, err := c.c.Write(b); err != nil {
		closeExport(exp)
		return nil, true, lost("export reply", err)
	}
	// Metadata contexts need NBD_OPT_GO's confirmation; this client did
	// not ask with the same name if it used EXPORT_NAME, so keep them
	// only when the names match.
	c.metaSet = c.metaSet && c.metaName == name
	return exp, true, nil
}

func (c *conn) transmissionFlags() uint16 {
	f := uint16(FlagHasFlags | FlagReadOnly | FlagSendFlush | FlagCanMultiConn | FlagSendCache)
	if c.structured {
		f |= FlagSendDF
	}
	return f
}

func (c *conn) optList(o option) error {
	if len(o.data) != 0 {
		return c.replyErr(o.typ, repErrInvalid, "NBD_OPT_LIST takes no data")
	}
	if c.srv.opts.List == nil {
		return c.replyErr(o.typ, repErrPolicy, "this server does not list its exports")
	}
	list, err := c.srv.opts.List(c.ctx)
	if err != nil {
		c.srv.logf("nbd: listing exports: %v", err)
		return c.replyErr(o.typ, repErrShutdown, "exports cannot be listed now")
	}
	for _, e := range list {
		name, desc := clip(e.Name), clip(e.Description)
		b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
		b = append(b, name...)
		b = append(b, desc...)
		if err := c.reply(o.typ, repServer, b); err != nil {
			return err
		}
	}
	return c.reply(o.typ, repAck, nil)
}

// clip shortens s to the protocol's longest string.
func clip(s string) string {
	if len(s) > maxStringLen {
		s = s[:maxStringLen]
	}
	return s
}

func (c *conn) optStartTLS(o option) error {
	switch {
	case len(o.data) != 0:
		return c.replyErr(o.typ, repErrInvalid, "NBD_OPT_STARTTLS takes no data")
	case c.srv.opts.TLSConfig == nil:
		return c.replyErr(o.typ, repErrPolicy, "this server does not offer TLS")
	case c.tls:
		return c.replyErr(o.typ, repErrInvalid, "TLS is already up")
	}
	if err := c.reply(o.typ, repAck, nil); err != nil {
		return err
	}
	if c.r.Buffered() > 0 {
		// The client must wait for the ACK before its TLS hello.
		return protoErr("client sent data before the STARTTLS reply")
	}
	tc := tls.Server(c.raw, c.srv.opts.TLSConfig)
	if err := tc.HandshakeContext(c.ctx); err != nil {
		return fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	c.c, c.r, c.tls = tc, bufio.NewReader(tc), true
	// Nothing negotiated before TLS survives it.
	c.structured, c.metaSet, c.metaName = false, false, ""
	return nil
}

// optInfoGo answers NBD_OPT_INFO and NBD_OPT_GO.
func (c *conn) optInfoGo(o option) (Export, bool, error) {
	d := o.data
	if len(d) < 6 {
		return nil, false, c.replyErr(o.typ, repErrInvalid, "%s data too short", optName(o.typ))
	}
	nl := binary.BigEndian.Uint32(d)
	if uint64(nl) > uint64(len(d))-6 {
		return nil, false, c.replyErr(o.typ, repErrInvalid, "export name longer than the option")
	}
	name := d[4 : 4+nl]
	rest := d[4+nl:]
	nreq := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+2*nreq {
		return nil, false, c.replyErr(o.typ, repErrInvalid, "%d information requests do not fill the option", nreq)
	}
	if !validString(name) {
		return nil, false, c.replyErr(o.typ, repErrInvalid, "export name is not a valid string")
	}
	var wantName, wantDesc bool
	for i := range nreq {
		switch binary.BigEndian.Uint16(rest[2+2*i:]) {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		}
	}
	exp, err := c.lookup(string(name))
	if err != nil {
		if errors.Is(err, ErrUnknownExport) {
			return nil, false, c.replyErr(o.typ, repErrUnknown, "no export named %q", name)
		}
		return nil, false, c.replyErr(o.typ, repErrUnknown, "export %q is not available", name)
	}
	ok := false
	defer func() {
		if !ok {
			closeExport(exp)
		}
	}()
	info := binary.BigEndian.AppendUint16(nil, infoExport)
	info = binary.BigEndian.AppendUint64(info, uint64(exp.Size()))
	info = binary.BigEndian.AppendUint16(info, c.transmissionFlags())
	if err := c.reply(o.typ, repInfo, info); err != nil {
		return nil, false, err
	}
	// Sent whether asked or not: these are the default constraints (any
	// alignment, at most 32 MiB) with a preferred size as a hint.
	bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	bs = binary.BigEndian.AppendUint32(bs, 1)
	bs = binary.BigEndian.AppendUint32(bs, preferredBlockSize(exp))
	bs = binary.BigEndian.AppendUint32(bs, MaxPayload)
	if err := c.reply(o.typ, repInfo, bs); err != nil {
		return nil, false, err
	}
	if wantName {
		if err := c.reply(o.typ, repInfo, append(binary.BigEndian.AppendUint16(nil, infoName), name...)); err != nil {
			return nil, false, err
		}
	}
	if d, ok := exp.(Describer); ok && wantDesc {
		if desc := clip(d.Description()); desc != "" {
			if err := c.reply(o.typ, repInfo, append(binary.BigEndian.AppendUint16(nil, infoDescription), desc...)); err != nil {
				return nil, false, err
			}
		}
	}
	if err := c.reply(o.typ, repAck, nil); err != nil {
		return nil, false, err
	}
	if o.typ == optInfo {
		return nil, false, nil
	}
	c.metaSet = c.metaSet && c.metaName == string(name)
	ok = true
	return exp, true, nil
}

// optMetaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT. The server knows one context,
// base:allocation.
func (c *conn) optMetaContext(o option) error {
	set := o.typ == optSetMetaContext
	if set {
		// A SET replaces the selection even when it fails.
		c.metaSet, c.metaName = false, ""
	}
	if !c.structured {
		return c.replyErr(o.typ, repErrInvalid, "negotiate structured replies first")
	}
	name, queries, ok := parseMetaQuery(o.data)
	if !ok {
		return c.replyErr(o.typ, repErrInvalid, "malformed %s", optName(o.typ))
	}
	exp, err := c.lookup(name)
	if err != nil {
		return c.replyErr(o.typ, repErrUnknown, "no export named %q", name)
	}
	closeExport(exp)
	match := false
	for _, q := range queries {
		switch {
		case q == ContextAllocation:
			match = true
		case q == "base:" && !set:
			match = true
		}
	}
	if len(queries) == 0 && !set {
		match = true
	}
	if match {
		b := binary.BigEndian.AppendUint32(nil, contextIDAllocation)
		b = append(b, ContextAllocation...)
		if err := c.reply(o.typ, repMetaContext, b); err != nil {
			return err
		}
		if set {
			c.metaSet, c.metaName = true, name
		}
	}
	return c.reply(o.typ, repAck, nil)
}

// parseMetaQuery splits the data of a metadata context option: export
// name, then a counted list of queries.
func parseMetaQuery(d []byte) (name string, queries []string, ok bool) {
	str := func() (string, bool) {
		if len(d) < 4 {
			return "", false
		}
		n := binary.BigEndian.Uint32(d)
		if uint64(n) > uint64(len(d)-4) || !validString(d[4:4+n]) {
			return "", false
		}
		s := string(d[4 : 4+n])
		d = d[4+n:]
		return s, true
	}
	if name, ok = str(); !ok || len(d) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(d)
	d = d[4:]
	// Each query takes at least its 4-byte length.
	if uint64(n) > uint64(len(d))/4 {
		return "", nil, false
	}
	for range n {
		q, ok := str()
		if !ok {
			return "", nil, false
		}
		queries = append(queries, q)
	}
	return name, queries, len(d) == 0
}
