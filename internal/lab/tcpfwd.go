package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// maxForwarded bounds the connections a TCPForward carries at once; a
// browser opens about six.
const maxForwarded = 64

// TCPForward carries TCP connections from a listener of this process
// (in the namespace the process runs in, usually the host's) to an
// address inside a lab namespace: the host reaches the gateway's API
// without a route, address or firewall rule added anywhere.
type TCPForward struct {
	ln     net.Listener
	ns     *NS
	target string
	slots  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// ForwardTCP listens on listen and forwards each connection to target
// inside ns.
func ForwardTCP(listen string, ns *NS, target string) (*TCPForward, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("forward %s to %s in %s: %w", listen, target, ns.Name, err)
	}
	f := &TCPForward{ln: ln, ns: ns, target: target, slots: make(chan struct{}, maxForwarded), conns: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the listening address.
func (f *TCPForward) Addr() net.Addr { return f.ln.Addr() }

// Close stops listening, cuts the connections carried and waits for them.
func (f *TCPForward) Close() error {
	err := f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

func (f *TCPForward) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		select {
		case f.slots <- struct{}{}:
		default:
			c.Close() // full: the client retries
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() { <-f.slots }()
			f.carry(c)
		}()
	}
}

func (f *TCPForward) track(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
}

func (f *TCPForward) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		delete(f.conns, c)
		c.Close()
	}
}

func (f *TCPForward) carry(c net.Conn) {
	var up net.Conn
	err := f.ns.Do(func() error {
		var err error
		up, err = net.DialTimeout("tcp", f.target, 5*time.Second)
		return err
	})
	if err != nil {
		c.Close()
		return
	}
	f.track(c, up)
	defer f.untrack(c, up)
	done := make(chan error, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- err
	}
	go pipe(up, c)
	go pipe(c, up)
	for range 2 {
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
