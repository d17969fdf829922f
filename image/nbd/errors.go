package nbd

import (
	"errors"
	"fmt"
	"io"
)

// Sentinel errors. Every error from this package about what the other end
// sent wraps ErrProtocol; the others name a refusal or a state.
var (
	// ErrProtocol: the peer broke the protocol (bad magic, a length out
	// of bounds, a reply that does not match its request). The
	// connection is dropped: nothing after it can be trusted.
	ErrProtocol = errors.New("nbd protocol violation")
	// ErrUnknownExport: the server has no export of that name.
	ErrUnknownExport = errors.New("no such nbd export")
	// ErrTLSRequired: the server serves nothing without TLS.
	ErrTLSRequired = errors.New("nbd server requires TLS")
	// ErrUnsupported: the server lacks something the client needs
	// (fixed newstyle, structured replies, a metadata context).
	ErrUnsupported = errors.New("nbd server does not support this")
	// ErrDisconnected: the connection broke or was closed; requests in
	// flight fail with it.
	ErrDisconnected = errors.New("nbd connection lost")
	// ErrShutdown: the server is shutting down.
	ErrShutdown = errors.New("nbd server is shutting down")
	// ErrBadURI: an NBD URI that does not parse or names unsupported
	// parameters.
	ErrBadURI = errors.New("bad nbd URI")
)

// protoErr builds an error wrapping ErrProtocol.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("nbd: %s: %w", fmt.Sprintf(format, args...), ErrProtocol)
}

// Error is an error the server returned for a request.
type Error struct {
	Errno   Errno
	Message string // the server's text, if it sent one
	// Offset is where the error lies in the export, for an error chunk
	// that names one (NBD_REPLY_TYPE_ERROR_OFFSET); -1 otherwise.
	Offset int64
}

func (e *Error) Error() string {
	s := "nbd server: " + e.Errno.String()
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors.Is(err, nbd.EIO) and the like work on an *Error, and
// errors.Is(err, ErrShutdown) on the server's ESHUTDOWN.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Errno:
		return e.Errno == t
	}
	return target == ErrShutdown && e.Errno == ESHUTDOWN
}

// Error makes an Errno usable as an error (errors.Is targets).
func (e Errno) Error() string { return "nbd: " + e.String() }

// lost wraps an error of the connection itself (a read or write that
// failed, the stream ending inside a message): the peer is gone.
func lost(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("nbd: %s: %w: %w", what, ErrDisconnected, err)
}
