package lab

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftTableFOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table belongs to
// the netlink socket that made it; no other socket may change or delete
// it, and the kernel removes it when that socket closes.
const nftTableFOwner = 0x2

// OwnTable replaces the inet table name in ns with an empty one that only
// the returned socket may change, until it is closed: a stand-in for
// another program holding fqdngate's table name, which fqdngate cannot
// rebuild over. google/nftables always sends table flags 0, so the batch
// is written here.
func OwnTable(ns *NS, name string) (*netlink.Conn, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns.FD()})
	if err != nil {
		return nil, fmt.Errorf("own table: netlink: %w", err)
	}
	// nfgenmsg: family, version, resource id (the subsystem, for a batch).
	batch := func(typ uint16) netlink.Message {
		return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
			Data: binary.BigEndian.AppendUint16([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}, unix.NFNL_SUBSYS_NFTABLES)}
	}
	table := func(typ uint16, flags netlink.HeaderFlags, attrs ...netlink.Attribute) netlink.Message {
		data, _ := netlink.MarshalAttributes(append([]netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: []byte(name + "\x00")}}, attrs...))
		return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: netlink.Request | netlink.Acknowledge | flags},
			Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...)}
	}
	msgs := []netlink.Message{
		batch(unix.NFNL_MSG_BATCH_BEGIN),
		// Create, delete, create: whether or not it existed.
		table(unix.NFT_MSG_NEWTABLE, netlink.Create),
		table(unix.NFT_MSG_DELTABLE, 0),
		table(unix.NFT_MSG_NEWTABLE, netlink.Create, netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: binary.BigEndian.AppendUint32(nil, nftTableFOwner)}),
		batch(unix.NFNL_MSG_BATCH_END),
	}
	if _, err := conn.SendMessages(msgs); err != nil {
		conn.Close()
		return nil, fmt.Errorf("own table: send: %w", err)
	}
	for acks := 3; acks > 0; {
		got, err := conn.Receive()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("own table %s: %w", name, err)
		}
		for _, m := range got {
			if m.Header.Type == netlink.Error {
				acks--
			}
		}
	}
	return conn, nil
}
