package main

import (
	"encoding/binary"
	"errors"
	"log"
	"net"
	"sync"

	"golang.org/x/net/ipv4"
)

// batchSize is the most datagrams one recvmmsg or sendmmsg moves.
const batchSize = 64

// outstanding is what a query sent upstream under an ID of ours needs
// for its reply: the client and the client's own ID.
type outstanding struct {
	client net.Addr
	id     uint16
	used   bool
}

// batched is the -batch forwarder's state shared by its two goroutines.
type batched struct {
	clients, upstream *ipv4.PacketConn
	up                net.Addr
	parse             bool
	mu                sync.Mutex
	next              uint16
	table             [1 << 16]outstanding
}

// startBatched starts the two goroutines of -batch on listening socket c.
func startBatched(c *net.UDPConn, up *net.UDPAddr, parse bool) error {
	uc, err := net.ListenUDP("udp", nil)
	if err != nil {
		return err
	}
	_ = uc.SetReadBuffer(4 << 20)
	b := &batched{clients: ipv4.NewPacketConn(c), upstream: ipv4.NewPacketConn(uc), up: up, parse: parse}
	go b.loop(b.clients, b.upstream, b.toUpstream)
	go b.loop(b.upstream, b.clients, b.toClient)
	return nil
}

// loop reads batches from in, turns each datagram into the one to send
// with turn (false: drop it) and sends them as one batch on out.
func (b *batched) loop(in, out *ipv4.PacketConn, turn func(m *ipv4.Message, buf []byte) ([]byte, net.Addr, bool)) {
	rd, wr := messages(), messages()
	for {
		n, err := in.ReadBatch(rd, 0)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		k := 0
		b.mu.Lock()
		for i := range rd[:n] {
			p, to, ok := turn(&rd[i], wr[k].Buffers[0][:0])
			if !ok {
				continue
			}
			wr[k].Buffers[0], wr[k].Addr = p, to
			k++
		}
		b.mu.Unlock()
		for sent := 0; sent < k; {
			m, err := out.WriteBatch(wr[sent:k], 0)
			if err != nil || m == 0 {
				break // dropped, as a full socket buffer would
			}
			sent += m
		}
	}
}

// toUpstream gives a client's query an ID of ours and remembers whose it
// is; b.mu is held.
func (b *batched) toUpstream(m *ipv4.Message, buf []byte) ([]byte, net.Addr, bool) {
	q := m.Buffers[0][:m.N]
	if len(q) < 12 {
		return nil, nil, false
	}
	b.next++
	p, ok := withID(q, b.next, b.parse, buf)
	if !ok {
		return nil, nil, false
	}
	b.table[b.next] = outstanding{client: m.Addr, id: binary.BigEndian.Uint16(q), used: true}
	return p, b.up, true
}

// toClient gives a reply back its client's ID; b.mu is held.
func (b *batched) toClient(m *ipv4.Message, buf []byte) ([]byte, net.Addr, bool) {
	r := m.Buffers[0][:m.N]
	if len(r) < 12 {
		return nil, nil, false
	}
	id := binary.BigEndian.Uint16(r)
	o := b.table[id]
	if !o.used {
		return nil, nil, false
	}
	b.table[id] = outstanding{}
	p, ok := withID(r, o.id, b.parse, buf)
	return p, o.client, ok
}

func messages() []ipv4.Message {
	ms := make([]ipv4.Message, batchSize)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 4096)}
	}
	return ms
}
