package nbd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// ListenUnix listens on a unix socket at path, made mode perm. A stale
// socket file there (nobody listening) is replaced; a live one, or any
// other file, is refused. Closing the listener removes the socket file.
func ListenUnix(path string, perm fs.FileMode) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("nbd: %s exists and is not a socket", path)
		}
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("nbd: %s: a server is already listening there", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("nbd: %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("nbd: removing stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	if err := os.Chmod(path, perm); err != nil {
		ln.Close()
		return nil, fmt.Errorf("nbd: %w", err)
	}
	return ln, nil
}

// ListenTCP listens on addr (HOST:PORT; port 0 picks one). A host that
// is not a loopback address (empty means every interface) is refused
// unless allowRemote: NBD has no authentication of its own, so serving
// beyond the machine is a decision for the user to make explicitly.
func ListenTCP(addr string, allowRemote bool) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen address %q: %w", addr, err)
	}
	if !allowRemote && !IsLoopback(host) {
		return nil, fmt.Errorf("nbd: %q is not a loopback address: serving disks to other machines needs an explicit choice", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	return ln, nil
}

// IsLoopback reports whether host, a name or an IP address, is this
// machine's loopback: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
