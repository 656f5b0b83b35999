package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
)

// Ports of the fake services.
const (
	PortHTTP  = 80
	PortHTTPS = 443
	PortMQTT  = 8883
	PortNTP   = 123
)

// maxConns bounds the connections each fake service handles at once.
const maxConns = 512

// Services are the fake cloud's servers. They listen on every address of
// the namespace they run in; the fake internet routes all of 203.0.113.0/24
// to itself, so every CDN address serves every name, as an edge does.
type Services struct {
	stops []func()
	wg    sync.WaitGroup
}

// StartServices starts HTTP on 80, HTTPS on 443 and an MQTT-like TLS
// session service on 8883 (certificates from ca, chosen by SNI), and an
// NTP-like responder on udp/123, inside ns.
func StartServices(ns *NS, ca *CA) (*Services, error) {
	s := &Services{}
	var (
		httpLn, httpsLn, mqttLn net.Listener
		ntp                     net.PacketConn
	)
	err := ns.Do(func() error {
		var err error
		if httpLn, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", PortHTTP)); err != nil {
			return err
		}
		if httpsLn, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", PortHTTPS)); err != nil {
			return err
		}
		if mqttLn, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", PortMQTT)); err != nil {
			return err
		}
		ntp, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", PortNTP))
		return err
	})
	if err != nil {
		for _, c := range []io.Closer{httpLn, httpsLn, mqttLn, ntp} {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("lab services: %w", err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", r.Host)
	})
	for _, srv := range []struct {
		ln  net.Listener
		tls bool
	}{{httpLn, false}, {httpsLn, true}} {
		hs := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		ln := srv.ln
		if srv.tls {
			ln = tls.NewListener(ln, ca.ServerConfig())
		}
		ln = limitListener(ln, maxConns)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); _ = hs.Serve(ln) }()
		s.stops = append(s.stops, func() { _ = hs.Close() })
	}
	mq := tls.NewListener(limitListener(mqttLn, maxConns), ca.ServerConfig())
	s.wg.Add(1)
	go func() { defer s.wg.Done(); serveSessions(mq) }()
	s.stops = append(s.stops, func() { mq.Close() })
	s.wg.Add(1)
	go func() { defer s.wg.Done(); serveNTP(ntp) }()
	s.stops = append(s.stops, func() { ntp.Close() })
	return s, nil
}

// Stop closes every listener and waits for the accept loops.
func (s *Services) Stop() {
	for _, f := range s.stops {
		f()
	}
	s.wg.Wait()
}

// serveSessions is the MQTT-like service: a long-lived TLS session where
// the device sends "PING n" and the service answers "PONG n".
func serveSessions(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(io.LimitReader(c, 1<<20))
			for {
				_ = c.SetReadDeadline(time.Now().Add(time.Minute))
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				rest, ok := strings.CutPrefix(strings.TrimSpace(line), "PING ")
				if !ok {
					return
				}
				if _, err := fmt.Fprintf(c, "PONG %s\n", rest); err != nil {
					return
				}
			}
		}()
	}
}

// ntpEpoch is 1900-01-01 in Unix seconds (negative).
const ntpEpoch = -2208988800

// serveNTP answers NTP-like client packets (mode 3) with a server packet
// (mode 4) carrying the current time; enough for a device to count a
// time sync. It answers from the address it was asked on: the socket
// listens on every address of the fake internet, and a reply from another
// one would not reach the device's connected socket. IPv4 only, as Azure
// Sphere devices are.
func serveNTP(conn net.PacketConn) {
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return
	}
	buf := make([]byte, 512)
	for {
		n, cm, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 48 || buf[0]&0x7 != 3 {
			continue
		}
		reply := make([]byte, 48)
		reply[0] = 0x24 // LI 0, version 4, mode 4 (server)
		reply[1] = 2    // stratum
		copy(reply[24:32], buf[40:48])
		now := time.Now()
		binary.BigEndian.PutUint32(reply[40:], uint32(now.Unix()-ntpEpoch))
		binary.BigEndian.PutUint32(reply[44:], uint32(uint64(now.Nanosecond())<<32/1e9))
		var reply4 *ipv4.ControlMessage
		if cm != nil {
			reply4 = &ipv4.ControlMessage{Src: cm.Dst}
		}
		_, _ = pc.WriteTo(reply, reply4, from)
	}
}

// limitListener bounds the connections open at once: Accept waits for a
// free slot.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, sem: make(chan struct{}, n)}
}

type limited struct {
	net.Listener
	sem chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &releaseConn{Conn: c, release: func() { <-l.sem }}, nil
}

type releaseConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *releaseConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// errBlocked marks a connection that got no answer: the way a silent drop
// looks from the device.
var errBlocked = errors.New("blocked (no answer)")

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
