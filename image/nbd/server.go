package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Options configure a Server. The zero value of every field but Lookup
// means "default".
type Options struct {
	// Lookup finds an export by name. Required.
	Lookup LookupFunc
	// List gives the exports NBD_OPT_LIST names. Nil refuses the option
	// (NBD_REP_ERR_POLICY), so exports cannot be enumerated.
	List func(ctx context.Context) ([]ExportInfo, error)
	// TLSConfig enables NBD_OPT_STARTTLS. Nil: no TLS (NOTLS mode).
	TLSConfig *tls.Config
	// RequireTLS refuses every option but STARTTLS and ABORT until TLS
	// is up (FORCEDTLS mode). Needs TLSConfig.
	RequireTLS bool
	// Workers serving one connection's requests at once; 4 when 0.
	Workers int
	// HandshakeTimeout bounds the option haggling of a connection (and
	// its TLS handshake); one minute when 0, none when negative.
	HandshakeTimeout time.Duration
	// ShutdownGrace is how long, once the context is done, replies in
	// flight may take to reach a client before its connection is cut;
	// 5 s when 0.
	ShutdownGrace time.Duration
	// Logf receives one line per connection error; nil discards them.
	Logf func(format string, args ...any)

	// maxExtents caps the extents of one block status reply (tests set
	// it low to make clients ask again); 1<<16 when 0.
	maxExtents int
}

// Server serves exports over NBD, fixed newstyle, read-only. Its methods
// are safe for concurrent use.
type Server struct {
	opts  Options
	pools bufPools
}

// NewServer returns a server with opts.
func NewServer(opts Options) (*Server, error) {
	if opts.Lookup == nil {
		return nil, errors.New("nbd: server needs a Lookup")
	}
	if opts.RequireTLS && opts.TLSConfig == nil {
		return nil, errors.New("nbd: RequireTLS needs a TLSConfig")
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = time.Minute
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.maxExtents <= 0 {
		opts.maxExtents = 1 << 16
	}
	return &Server{opts: opts}, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// Serve accepts connections on ln and serves each until ctx is done.
// Then it closes ln, lets requests in flight finish (within
// ShutdownGrace), closes every connection and returns nil. It returns
// early with the error of a failing Accept.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			ln.Close()
			return fmt.Errorf("nbd: accept: %w", err)
		}
		conns.Go(func() {
			if err := s.ServeConn(ctx, c); err != nil {
				s.logf("nbd: client %s: %v", peerName(c), err)
			}
		})
	}
}

// ServeConn serves one client on c until it disconnects or ctx is done,
// and closes c. It returns nil for a client that disconnected as the
// protocol says (NBD_OPT_ABORT, NBD_CMD_DISC) and for a shutdown.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	cs := &conn{srv: s, ctx: ctx, raw: c, c: c}
	defer func() { cs.c.Close() }()
	stop := context.AfterFunc(ctx, cs.shutdown)
	defer stop()
	exp, err := cs.handshake()
	if err != nil || exp == nil {
		if cs.isShutdown() {
			return nil
		}
		return err
	}
	defer closeExport(exp)
	if err := cs.transmit(exp); err != nil && !cs.isShutdown() {
		return err
	}
	return nil
}

// closeExport closes an export Lookup gave, if it is a Closer.
func closeExport(e Export) {
	if c, ok := e.(io.Closer); ok {
		c.Close()
	}
}

// peerName names a connection's client for logs: its address, or for a
// unix socket (whose clients have none) the socket's.
func peerName(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "on " + c.LocalAddr().String()
}
