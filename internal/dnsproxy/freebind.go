package dnsproxy

import (
	"net"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenOption changes how Listen binds.
type ListenOption func(*listenOptions)

type listenOptions struct {
	freeBind bool
}

// WithFreeBind binds addresses the host does not hold (yet): a cluster's
// VIP on the node keepalived has not given it to. The sockets get
// IP_FREEBIND or IPV6_FREEBIND, so that net.ipv4.ip_nonlocal_bind is not
// needed; they receive once the address arrives, with nothing restarted.
func WithFreeBind() ListenOption {
	return func(o *listenOptions) { o.freeBind = true }
}

// listenConfig binds with SO_REUSEPORT: several UDP sockets on one address
// (the kernel spreads clients over them), and wildcard listeners beside
// specific ones; and with the free bind when asked.
func (o listenOptions) listenConfig() net.ListenConfig {
	return net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			if serr != nil || !o.freeBind {
				return
			}
			if strings.HasSuffix(network, "6") {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
}
