package enforce

import (
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// batchBuffer is the send buffer of the writer's netlink socket. A table
// is made (at start, and rebuilt after someone else's change) in one
// transaction holding every live element, and a transaction must be one
// sendmsg: with the default buffer (net.core.wmem_default, about 208 KiB)
// a few thousand IPv6 entries no longer fit and the restart fails. nft
// itself sizes its buffer to its batch the same way. The buffer is a
// bound, not an allocation.
const batchBuffer = 256 << 20

// ackBuffer holds the kernel's replies to a large transaction.
const ackBuffer = 16 << 20

// bigBuffers raises the socket's buffers past net.core.{w,r}mem_max
// (SO_*BUFFORCE needs CAP_NET_ADMIN, which fqdngate has to program
// nftables at all).
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("enforce: netlink socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchBuffer); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ackBuffer)
	}); err != nil {
		return fmt.Errorf("enforce: netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("enforce: netlink socket buffers: %w", serr)
	}
	return nil
}
