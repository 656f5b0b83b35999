package enforce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel walks every set with timeouts for expired elements once per
// gc interval, one second unless the set says otherwise, on a kworker of
// the CPU that filled it: with a few hundred thousand elements the walk
// takes tens of milliseconds every second, and everything on that CPU
// waits for it (bench/README.md has the measurement).
// A longer interval walks as often as the operator chooses; expired
// elements match nothing in the meantime (the lookup checks expiry), they
// only hold their memory a little longer.
//
// google/nftables (v0.3.0) has no field for NFTA_SET_GC_INTERVAL, so the
// sets are updated after they are built: the library encodes each set
// exactly as it created it, captured from a batch that is never sent, the
// attribute is appended, and the update goes to the kernel in a batch of
// its own. Linux applies gc-interval updates to existing sets from 6.10
// on; older kernels accept the message and keep one second, which
// applyGCInterval reads back (gcIntervalOf) and reports.

// nftaSetGCInterval is NFTA_SET_GC_INTERVAL (milliseconds, big endian u32).
const nftaSetGCInterval = 0x0c

// errCaptured stops the capture connection's Flush; the batch is kept.
var errCaptured = errors.New("captured")

// setGCInterval sets the gc interval of sets in the kernel (in the network
// namespace netns, 0 for this one) in one transaction; own learns the
// socket it sends from before it sends.
func setGCInterval(netns int, sets []*nftables.Set, d time.Duration, own func(*netlink.Conn)) error {
	ms := d.Milliseconds()
	if ms <= 0 || ms > 1<<32-1 {
		return fmt.Errorf("gc interval %s is out of range", d)
	}
	var captured []netlink.Message
	enc, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req != nil { // netlink's test socket also calls with nil to receive
			captured = req
		}
		return nil, errCaptured
	}))
	if err != nil {
		return err
	}
	for _, s := range sets {
		// The library keeps the ID it allocated in the set; a copy keeps
		// the real set's untouched.
		c := *s
		c.ID = 0
		if err := enc.AddSet(&c, nil); err != nil {
			return fmt.Errorf("encode set %s: %w", s.Name, err)
		}
	}
	if err := enc.Flush(); !errors.Is(err, errCaptured) {
		return fmt.Errorf("encode sets: %v", err)
	}
	newset := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSET)
	attr, _ := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nftaSetGCInterval, Data: binary.BigEndian.AppendUint32(nil, uint32(ms))},
	})
	acks := 0
	for i, m := range captured {
		// Length, sequence and port are the capture's; the real
		// connection fills its own (it keeps a length that is set).
		captured[i].Header.Length, captured[i].Header.Sequence, captured[i].Header.PID = 0, 0, 0
		if m.Header.Type != newset {
			continue // the batch's begin and end
		}
		// Without NLM_F_EXCL: the set exists, and this updates it.
		captured[i].Header.Flags = netlink.Request | netlink.Acknowledge
		captured[i].Data = append(append([]byte(nil), m.Data...), attr...)
		acks++
	}
	if acks != len(sets) {
		return fmt.Errorf("encode sets: %d set messages for %d sets", acks, len(sets))
	}
	conn, err := dialNetfilter(netns)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Its changes are fqdngate's own, not tampering (watch.go).
	own(conn)
	if _, err := conn.SendMessages(captured); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	// mdlayher/netlink turns an error acknowledgement into an error here.
	for acks > 0 {
		msgs, err := conn.Receive()
		if err != nil {
			return fmt.Errorf("update sets: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error {
				acks--
			}
		}
	}
	return nil
}

// gcIntervalOf reads a set's gc interval back from the kernel; zero means
// the set has none of its own (the kernel's one second).
func gcIntervalOf(netns int, table *nftables.Table, set string) (time.Duration, error) {
	conn, err := dialNetfilter(netns)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	attrs, _ := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: []byte(table.Name + "\x00")},
		{Type: unix.NFTA_SET_NAME, Data: []byte(set + "\x00")},
	})
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSET),
			Flags: netlink.Request | netlink.Acknowledge},
		// nfgenmsg: family, version, resource id.
		Data: append([]byte{byte(table.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return 0, fmt.Errorf("get set %s: %w", set, err)
	}
	for _, m := range msgs {
		if m.Header.Type == netlink.Error || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("get set %s: %w", set, err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == nftaSetGCInterval {
				return time.Duration(ad.Uint32()) * time.Millisecond, nil
			}
		}
		return 0, ad.Err()
	}
	return 0, fmt.Errorf("get set %s: no answer", set)
}

func dialNetfilter(netns int) (*netlink.Conn, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
