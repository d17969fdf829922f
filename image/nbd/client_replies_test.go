package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeServer answers cairn's client handshake for export "disk" (256 KiB,
// base:allocation granted as ID 1), reads one request, sends reply, then
// hangs up after the next request (NBD_CMD_DISC). It returns the socket.
func fakeServer(t *testing.T, reply []byte) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(serverPrefix()); err != nil {
			return
		}
		in := make([]byte, len(handshakePrefix())+requestHeaderLen)
		if _, err := io.ReadFull(c, in); err != nil {
			return
		}
		c.Write(reply)
		// The next request is NBD_CMD_DISC: hang up after it.
		io.ReadFull(c, make([]byte, requestHeaderLen))
	}()
	return sock
}

// Replies that break the protocol fail the request and the connection
// with ErrProtocol; legal but unusual ones (chunks out of order, an
// error with an offset) are understood.
func TestClientChecksReplies(t *testing.T) {
	data := func(flags uint16, off uint64, b []byte) []byte {
		return chunk(flags, replyTypeOffsetData, 1, append(binaryU64(off), b...))
	}
	hole := func(flags uint16, off uint64, n uint32) []byte {
		return chunk(flags, replyTypeOffsetHole, 1, appendU32(binaryU64(off), n))
	}
	ones := bytes.Repeat([]byte{1}, 2048)
	for _, tc := range []struct {
		name  string
		reply []byte
		check func(t *testing.T, buf []byte, err error)
	}{
		{"overlap", join(data(0, 0, ones), data(replyFlagDone, 1024, ones)), func(t *testing.T, _ []byte, err error) {
			if wantProtocol(t, nil, err); err == nil || !strings.Contains(err.Error(), "overlap") {
				t.Errorf("overlapping chunks: %v", err)
			}
		}},
		{"outside", data(replyFlagDone, 4096, ones[:512]), wantProtocol},
		{"short", data(replyFlagDone, 0, ones), wantProtocol},
		{"other cookie", chunk(replyFlagDone, replyTypeOffsetData, 9, append(binaryU64(0), ones...)), wantProtocol},
		{"empty hole", hole(replyFlagDone, 0, 0), wantProtocol},
		{"hole past the end", hole(replyFlagDone, 2048, 4096), wantProtocol},
		{"unknown type", chunk(replyFlagDone, 77, 1, nil), wantProtocol},
		{"none not done", chunk(0, replyTypeNone, 1, nil), wantProtocol},
		{"bad magic", bytes.Repeat([]byte{0xab}, 32), wantProtocol},
		{"out of order", join(data(0, 2048, ones), hole(replyFlagDone, 0, 2048)), func(t *testing.T, buf []byte, err error) {
			if err != nil || !bytes.Equal(buf[:2048], make([]byte, 2048)) || !bytes.Equal(buf[2048:], ones) {
				t.Errorf("read: %v", err)
			}
		}},
		{"error offset", join(data(0, 0, ones[:1024]), errorOffsetChunk(1, EIO, 1024)), func(t *testing.T, buf []byte, err error) {
			var ne *Error
			if !errors.As(err, &ne) || ne.Errno != EIO || ne.Offset != 1024 {
				t.Errorf("read: %v, want EIO at 1024", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, fakeServer(t, tc.reply), "disk", ClientOptions{MetaContexts: []string{ContextAllocation}})
			buf := make([]byte, 4096)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.ReadAtContext(ctx, buf, 0)
			tc.check(t, buf, err)
		})
	}
	status := func(id uint32, ext ...uint32) []byte {
		p := appendU32(nil, id)
		for _, e := range ext {
			p = appendU32(p, e)
		}
		return chunk(replyFlagDone, replyTypeBlockStatus, 1, p)
	}
	for _, tc := range []struct {
		name  string
		reply []byte
	}{
		{"unknown context", status(7, 4096, 0)},
		{"empty extent", status(1, 0, 0)},
		{"no descriptors", status(1)},
		{"extents past the request", status(1, 256<<10, 0, 4096, 0)},
		{"simple reply", append(appendU32(appendU32(nil, magicSimpleReply), 0), binaryU64(1)...)},
	} {
		t.Run("status/"+tc.name, func(t *testing.T) {
			c := dial(t, fakeServer(t, tc.reply), "disk", ClientOptions{MetaContexts: []string{ContextAllocation}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.BlockStatus(ctx, 0, c.Size(), false)
			wantProtocol(t, nil, err)
		})
	}
}

func wantProtocol(t *testing.T, _ []byte, err error) {
	t.Helper()
	if !errors.Is(err, ErrProtocol) || !errors.Is(err, ErrDisconnected) {
		t.Errorf("got %v, want ErrProtocol and ErrDisconnected", err)
	}
}

func errorOffsetChunk(cookie uint64, e Errno, off uint64) []byte {
	p := appendU32(nil, uint32(e))
	p = append(p, 0, 0) // no message
	return chunk(replyFlagDone, replyTypeErrorOffset, cookie, append(p, binaryU64(off)...))
}

func join(b ...[]byte) []byte { return bytes.Join(b, nil) }

func binaryU64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
