package nbd

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// URI is an NBD URI as the NBD project's docs/uri.md defines it:
//
//	nbd://HOST[:PORT]/EXPORT            TCP, TLS if offered
//	nbds://HOST[:PORT]/EXPORT           TCP, TLS required
//	nbd+unix:///EXPORT?socket=PATH      unix socket
//	nbds+unix:///EXPORT?socket=PATH     unix socket, TLS required
//
// The export name is the path without its leading '/', percent-decoded.
// Query parameters: socket, tls-type (x509 only), tls-hostname,
// tls-verify-peer; x-* parameters are ignored, others refused.
type URI struct {
	// Network is "unix" or "tcp"; Address the socket's path (an
	// abstract socket as "@name") or HOST:PORT.
	Network, Address string
	Export           string
	// TLS: the scheme requires TLS (nbds, nbds+unix).
	TLS bool
	// TLSHostname is the name the server's certificate must carry: the
	// tls-hostname parameter, else the host of a TCP URI.
	TLSHostname string
	// NoVerifyPeer: tls-verify-peer=0.
	NoVerifyPeer bool
	// User is the userinfo of the authority, if any.
	User string
}

// ParseURI parses an NBD URI. Errors wrap ErrBadURI.
func ParseURI(s string) (URI, error) {
	bad := func(format string, args ...any) (URI, error) {
		return URI{}, fmt.Errorf("%w %q: %s", ErrBadURI, s, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("%v", err)
	}
	var r URI
	switch strings.ToLower(u.Scheme) {
	case "nbd":
		r.Network = "tcp"
	case "nbds":
		r.Network, r.TLS = "tcp", true
	case "nbd+unix":
		r.Network = "unix"
	case "nbds+unix":
		r.Network, r.TLS = "unix", true
	default:
		return bad("scheme must be nbd, nbds, nbd+unix or nbds+unix")
	}
	if u.Opaque != "" {
		return bad("no // after the scheme")
	}
	if strings.HasPrefix(u.Path, "/") {
		r.Export = u.Path[1:]
	} else if u.Path != "" {
		return bad("the export must follow a /")
	}
	if strings.ContainsRune(r.Export, 0) {
		return bad("export name holds a NUL")
	}
	if u.User != nil {
		r.User = u.User.Username()
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query: %v", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return bad("parameter %s given %d times", k, len(v))
		}
		switch {
		case k == "socket":
			if r.Network != "unix" {
				return bad("socket= is for nbd+unix URIs")
			}
			r.Address = v[0]
		case k == "tls-type":
			if v[0] != "x509" {
				return bad("tls-type %q is not supported (only x509)", v[0])
			}
		case k == "tls-hostname":
			r.TLSHostname = v[0]
		case k == "tls-verify-peer":
			switch v[0] {
			case "0", "false":
				r.NoVerifyPeer = true
			case "1", "true":
			default:
				return bad("tls-verify-peer must be 0 or 1")
			}
		case strings.HasPrefix(k, "x-"):
		default:
			return bad("unknown parameter %s", k)
		}
	}
	if r.Network == "unix" {
		if u.Host != "" {
			return bad("a unix socket URI has no host")
		}
		if r.Address == "" {
			return bad("socket= is required")
		}
		if r.Address[0] == 0 {
			r.Address = "@" + r.Address[1:] // Go's name for an abstract socket
		}
		return r, nil
	}
	host := u.Hostname()
	if host == "" {
		return bad("no host")
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	r.Address = net.JoinHostPort(host, port)
	if r.TLSHostname == "" {
		r.TLSHostname = host
	}
	return r, nil
}

// String formats u as an NBD URI.
func (u URI) String() string {
	scheme := "nbd"
	if u.TLS {
		scheme = "nbds"
	}
	v := url.Values{}
	out := url.URL{Path: "/" + u.Export}
	if u.Network == "unix" {
		scheme += "+unix"
		addr := u.Address
		if strings.HasPrefix(addr, "@") {
			addr = "\x00" + addr[1:]
		}
		v.Set("socket", addr)
	} else {
		out.Host = u.Address
		if h, _, err := net.SplitHostPort(u.Address); err == nil && u.TLSHostname == h {
			u.TLSHostname = ""
		}
	}
	if u.TLSHostname != "" {
		v.Set("tls-hostname", u.TLSHostname)
	}
	if u.NoVerifyPeer {
		v.Set("tls-verify-peer", "0")
	}
	if u.User != "" {
		out.User = url.User(u.User)
	}
	out.Scheme = scheme
	out.RawQuery = v.Encode()
	s := out.String()
	if u.Network == "unix" && !strings.HasPrefix(s, scheme+"://") {
		// url.URL drops the empty authority: nbd+unix:/x, not :///x.
		s = scheme + "://" + strings.TrimPrefix(s, scheme+":")
	}
	return s
}

// UnixURI is the nbd+unix URI of export on the socket at path.
func UnixURI(path, export string) string {
	return URI{Network: "unix", Address: path, Export: export}.String()
}

// TCPURI is the nbd URI of export at addr (HOST:PORT).
func TCPURI(addr, export string) string {
	return URI{Network: "tcp", Address: addr, Export: export}.String()
}
