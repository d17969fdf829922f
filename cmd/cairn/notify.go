package main

import (
	"net"
	"os"
)

// sdNotify tells systemd the daemon's state ("READY=1", "STOPPING=1")
// when it runs as a Type=notify service: NOTIFY_SOCKET names a datagram
// socket ("@" for the abstract namespace). Elsewhere it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
