package config

import "time"

func (l *Listen) applyTCPDefaults() {
	if l.TCPMaxConns == 0 {
		l.TCPMaxConns = DefaultTCPMaxConns
	}
	if l.TCPMaxConnsPerClient == 0 {
		l.TCPMaxConnsPerClient = DefaultTCPMaxConnsPerClient
	}
	if l.TCPIdleTimeout == 0 {
		l.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if l.TCPReadTimeout == 0 {
		l.TCPReadTimeout = DefaultTCPReadTimeout
	}
}

// validateTCP checks the TCP DNS bounds. The timeouts' floors are low so
// that tests can use short ones; a real deployment keeps seconds.
func (l *Listen) validateTCP(col *collector, p path) {
	if l.TCPMaxConns < 1 || l.TCPMaxConns > 65536 {
		col.add(p.with("tcp_max_conns"), "%d is outside 1..65536", l.TCPMaxConns)
	}
	if l.TCPMaxConnsPerClient < 1 || l.TCPMaxConnsPerClient > 65536 {
		col.add(p.with("tcp_max_conns_per_client"), "%d is outside 1..65536", l.TCPMaxConnsPerClient)
	} else if l.TCPMaxConnsPerClient > l.TCPMaxConns && l.TCPMaxConns >= 1 {
		col.add(p.with("tcp_max_conns_per_client"), "%d is above tcp_max_conns %d", l.TCPMaxConnsPerClient, l.TCPMaxConns)
	}
	if l.TCPIdleTimeout < 10*time.Millisecond || l.TCPIdleTimeout > time.Hour {
		col.add(p.with("tcp_idle_timeout"), "%s is outside 10ms..1h", l.TCPIdleTimeout)
	}
	if l.TCPReadTimeout < 10*time.Millisecond || l.TCPReadTimeout > time.Minute {
		col.add(p.with("tcp_read_timeout"), "%s is outside 10ms..1m", l.TCPReadTimeout)
	}
}
