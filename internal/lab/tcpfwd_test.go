package lab_test

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// TestForwardTCP: a connection to the forwarder on this process's
// loopback reaches a server on the loopback of a lab namespace, which the
// host could not reach otherwise.
func TestForwardTCP(t *testing.T) {
	labtest.Require(t, "ip")
	ns := labtest.NS(t, "fwd")
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "inside %s", line)
			}()
		}
	}()
	f, err := lab.ForwardTCP("127.0.0.1:0", ns, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.DialTimeout("tcp", f.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(c, "hello")
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "inside hello\n" {
		t.Fatalf("through the forwarder: %q, %v", got, err)
	}
}
