package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The daemon protocol: length-prefixed frames over a unix socket. The
// client sends one request frame, then at most a cancel frame; the daemon
// streams stdout and stderr frames and ends with an exit frame. Running
// the very same command code on both sides keeps output and exit codes
// identical whether or not a daemon owns the vault.
const (
	frameRequest byte = 1 // JSON daemonRequest
	frameStdout  byte = 2
	frameStderr  byte = 3
	frameExit    byte = 4 // 4-byte big-endian exit code
	frameCancel  byte = 5 // the user pressed Ctrl-C
)

const maxFrame = 16 << 20

type daemonRequest struct {
	Args     []string `json:"args"`
	Cwd      string   `json:"cwd"`
	Terminal bool     `json:"terminal"`
	// StdoutTerminal: the client's stdout is a terminal.
	StdoutTerminal bool              `json:"stdout_terminal"`
	Env            map[string]string `json:"env"`
	// Vault is the vault the command is for, absolute. VaultNamed says
	// it was named (--vault, CAIRN_VAULT); the daemon then refuses to run
	// the command unless Vault is its own.
	Vault      string `json:"vault,omitempty"`
	VaultNamed bool   `json:"vault_named,omitempty"`
	// Width and StdoutWidth are the columns of the client's terminals
	// (0: not a terminal), so bars and tables fit them.
	Width       int `json:"width,omitempty"`
	StdoutWidth int `json:"stdout_width,omitempty"`
	// TZ is the client's $TZ, so times print in its zone.
	TZ string `json:"tz,omitempty"`
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("daemon protocol: frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], b, nil
}

// frameWriter turns writes into frames of one type; writers sharing a
// connection share its mutex.
type frameWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	typ byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writeFrame(f.w, f.typ, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
