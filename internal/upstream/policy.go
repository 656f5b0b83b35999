package upstream

import "sync/atomic"

// Policy orders the upstreams a query tries.
type Policy interface {
	// Order appends to dst the proxies in the order a query tries them,
	// and returns it. It must name at least one proxy when there is one.
	Order(dst, proxies []*Proxy) []*Proxy
}

// RoundRobin starts each query at the next upstream in turn and tries the
// others after it. Upstreams marked down are left out while any is up;
// when all are down they are all tried in turn, because failing without
// asking would turn a health check's mistake into an outage.
type RoundRobin struct{ next atomic.Uint32 }

// Order implements Policy.
func (r *RoundRobin) Order(dst, proxies []*Proxy) []*Proxy {
	n := len(proxies)
	if n == 0 {
		return dst
	}
	start := int(r.next.Add(1) % uint32(n))
	base := len(dst)
	for i := range n {
		if x := proxies[(start+i)%n]; !x.Down() {
			dst = append(dst, x)
		}
	}
	if len(dst) == base {
		for i := range n {
			dst = append(dst, proxies[(start+i)%n])
		}
	}
	return dst
}
