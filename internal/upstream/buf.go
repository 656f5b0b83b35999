package upstream

import "sync"

const (
	// udpBufSize is the largest UDP reply read. fqdngate offers
	// upstreams 1232 bytes (EDNS); a larger datagram is out of spec, and
	// one beyond this buffer is cut and skipped as malformed.
	udpBufSize = 4096
	// streamBufSize holds any TCP or TLS message (a 16-bit length).
	streamBufSize = 65535
)

// Buffers are pooled: a buffer per exchange was most of the bytes the
// forwarding path allocated.
var (
	udpBufs    = sync.Pool{New: func() any { b := make([]byte, udpBufSize); return &b }}
	streamBufs = sync.Pool{New: func() any { b := make([]byte, streamBufSize); return &b }}
)

func getBuf(p *sync.Pool) *[]byte { return p.Get().(*[]byte) }

func putBuf(p *sync.Pool, b *[]byte) {
	*b = (*b)[:cap(*b)]
	p.Put(b)
}
