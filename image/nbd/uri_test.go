package nbd

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want URI
	}{
		// The examples of the NBD URI specification.
		{"nbd://example.com/disk", URI{Network: "tcp", Address: "example.com:10809", Export: "disk", TLSHostname: "example.com"}},
		{"nbd+unix:///disk?socket=sock", URI{Network: "unix", Address: "sock", Export: "disk"}},
		{"nbd://example.com/", URI{Network: "tcp", Address: "example.com:10809", TLSHostname: "example.com"}},
		{"nbd://example.com", URI{Network: "tcp", Address: "example.com:10809", TLSHostname: "example.com"}},
		{"nbd://example.com//disk", URI{Network: "tcp", Address: "example.com:10809", Export: "/disk", TLSHostname: "example.com"}},
		{"nbd://example.com/hello%20world", URI{Network: "tcp", Address: "example.com:10809", Export: "hello world", TLSHostname: "example.com"}},
		{"nbd+unix:///?socket=%00/abstract", URI{Network: "unix", Address: "@/abstract"}},
		// More.
		{"nbds://[::1]:1234/x", URI{Network: "tcp", Address: "[::1]:1234", Export: "x", TLS: true, TLSHostname: "::1"}},
		{"nbd://u@127.0.0.1:99/x?x-mine=1&tls-verify-peer=0", URI{Network: "tcp", Address: "127.0.0.1:99", Export: "x", TLSHostname: "127.0.0.1", NoVerifyPeer: true, User: "u"}},
		{"nbds+unix:///d?socket=/run/s.sock&tls-hostname=h&tls-type=x509", URI{Network: "unix", Address: "/run/s.sock", Export: "d", TLS: true, TLSHostname: "h"}},
	} {
		got, err := ParseURI(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseURI(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		back, err := ParseURI(got.String())
		if err != nil || back != got {
			t.Errorf("ParseURI(%q.String() = %q) = %+v, %v", tc.in, got.String(), back, err)
		}
	}
	for _, bad := range []string{
		"http://example.com/x", "nbd+unix:///x", "nbd+unix://host/x?socket=s", "nbd:///x",
		"nbd://h/x?foo=1", "nbd://h/x?tls-type=psk", "nbd://h/x?socket=s", "nbd:x",
		"nbd://h/x?tls-verify-peer=2", "nbd+unix:///x?socket=a&socket=b", "nbd://h/a%00b", "::",
	} {
		if u, err := ParseURI(bad); !errors.Is(err, ErrBadURI) {
			t.Errorf("ParseURI(%q) = %+v, %v; want ErrBadURI", bad, u, err)
		}
	}
	for _, export := range []string{"", "disk", "a b/c", "/lead", "ü?&="} {
		u, err := ParseURI(UnixURI("/tmp/x y.sock", export))
		if err != nil || u.Export != export || u.Address != "/tmp/x y.sock" {
			t.Errorf("UnixURI round trip of %q: %+v, %v", export, u, err)
		}
		u, err = ParseURI(TCPURI("127.0.0.1:5", export))
		if err != nil || u.Export != export || u.Address != "127.0.0.1:5" {
			t.Errorf("TCPURI round trip of %q: %+v, %v", export, u, err)
		}
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := ListenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v", st.Mode(), err)
	}
	if _, err := ListenUnix(sock, 0o600); err == nil {
		t.Error("a second listener on a live socket")
	}
	// A stale socket (its server gone without removing it) is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = ListenUnix(sock, 0o600)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := ListenUnix(plain, 0o600); err == nil {
		t.Error("listened over a regular file")
	}
	for _, addr := range []string{":0", "0.0.0.0:0", "192.0.2.1:0", "[::]:0"} {
		if ln, err := ListenTCP(addr, false); err == nil {
			ln.Close()
			t.Errorf("ListenTCP(%q) without allowRemote listened", addr)
		}
	}
	for _, h := range []string{"localhost", "127.0.0.1", "127.5.5.5", "::1"} {
		if !IsLoopback(h) {
			t.Errorf("IsLoopback(%q) = false", h)
		}
	}
	// The client over TCP, by an nbd:// URI.
	tcp, err := ListenTCP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	exp := sampleExport()
	serveOn(t, Options{}, map[string]Export{"disk": exp}, tcp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, TCPURI(tcp.Addr().String(), "disk"), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != exp.size {
		t.Errorf("size over TCP %d", c.Size())
	}
}
