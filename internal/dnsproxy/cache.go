package dnsproxy

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Cache holds upstream answers for their TTL, so that a name many devices
// ask goes upstream once per TTL. It sits after the policy: a client only
// ever gets a cached answer for a name it may resolve, and every answer,
// cached or not, goes through the same walk, install and record steps, so
// the kernel holds what the client is told. Bounded: at most Size answers,
// an arbitrary sixteenth of a full shard dropped to make room.
type Cache struct {
	shards [cacheShards]cacheShard
	seed   maphash.Seed
	per    int
	// stale is how long past expiry an answer is kept for serve-stale
	// (see stale.go); zero drops answers when they expire.
	stale time.Duration
}

const (
	cacheShards = 16
	// negativeTTL bounds how long NXDOMAIN and empty answers are kept.
	negativeTTL = 30 * time.Second
)

type cacheShard struct {
	mu sync.Mutex
	m  map[cacheKey]*cached
}

type cacheKey struct {
	name   string
	qtype  uint16
	do, cd bool // DNSSEC OK and checking disabled change the answer
}

// cached holds the answer in wire form: a byte slice the collector need
// not scan, a quarter of the size of the unpacked message. A full cache
// of unpacked messages was most of what each collection marked.
type cached struct {
	wire    []byte
	stored  time.Time
	expires time.Time
	// reply is the reply last made from this answer, for one kind of
	// client (see prepared); nil until the answer is used again. One, not
	// one per kind: the cache's memory stays bounded by its entries (about
	// twice and a half the answers' bytes), and a gateway's clients are
	// mostly of one kind.
	reply atomic.Pointer[prepared]
}

// NewCache makes a cache of at most size answers; size 0 returns nil (no
// cache), which the handler accepts.
func NewCache(size int) *Cache {
	if size <= 0 {
		return nil
	}
	c := &Cache{seed: maphash.MakeSeed(), per: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*cached)
	}
	return c
}

func (c *Cache) shard(k cacheKey) *cacheShard {
	return &c.shards[maphash.String(c.seed, k.name)%cacheShards]
}

func keyOf(q *dns.Msg) cacheKey {
	do := false
	if opt := q.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	return cacheKey{name: strings.ToLower(q.Question[0].Name), qtype: q.Question[0].Qtype, do: do, cd: q.CheckingDisabled}
}

// Get returns a copy of the answer to q with its TTLs lowered by the time
// it has been cached, or nil.
func (c *Cache) Get(q *dns.Msg, now time.Time) *dns.Msg {
	if e := c.lookup(q, now); e != nil {
		return e.message(now)
	}
	return nil
}

// lookup returns the live entry for q, or nil.
func (c *Cache) lookup(q *dns.Msg, now time.Time) *cached {
	if c == nil {
		return nil
	}
	k := keyOf(q)
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.m[k]
	if ok && !now.Before(e.expires) {
		if !now.Before(e.expires.Add(c.stale)) {
			delete(s.m, k)
		}
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return e
}

// message is a copy of the answer with its TTLs lowered by its age.
func (e *cached) message(now time.Time) *dns.Msg {
	m := new(dns.Msg)
	if err := m.Unpack(e.wire); err != nil {
		return nil // cannot happen: it was unpacked before it was stored
	}
	age := e.age(now)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			if h := rr.Header(); h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m
}

// age is how long, in whole seconds, the answer has been cached.
func (e *cached) age(now time.Time) uint32 {
	return uint32(max(now.Sub(e.stored), 0) / time.Second)
}

// Put stores r, the answer to q, for its lowest TTL (negative answers for
// at most negativeTTL). Failures and truncated answers are not stored.
// The cache keeps r in wire form; Get hands out new messages. wire, if
// not nil, is r as it arrived, kept as it is (the caller gives up the
// slice); packing r again was a twentieth of the unique mix's CPU.
func (c *Cache) Put(q, r *dns.Msg, wire []byte, now time.Time) {
	if c == nil || r.Truncated || (r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError) {
		return
	}
	ttl, ok := minTTL(r)
	if !ok {
		return
	}
	if r.Rcode == dns.RcodeNameError || len(r.Answer) == 0 {
		ttl = min(ttl, negativeTTL)
	}
	if ttl <= 0 {
		return
	}
	if wire == nil {
		var err error
		if wire, err = r.Pack(); err != nil {
			return
		}
	}
	k := keyOf(q)
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.per {
		n := 0
		for old := range s.m {
			delete(s.m, old)
			if n++; n >= max(1, c.per/16) {
				break
			}
		}
	}
	s.m[k] = &cached{wire: wire, stored: now, expires: now.Add(ttl)}
}

// Len is the number of answers held.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return n
}

// minTTL is the lowest TTL of the answer and authority sections (a
// negative answer's SOA bounds it); ok is false when there is none.
func minTTL(r *dns.Msg) (time.Duration, bool) {
	lowest, found := uint32(0), false
	for _, sec := range [][]dns.RR{r.Answer, r.Ns} {
		for _, rr := range sec {
			t := rr.Header().Ttl
			if soa, ok := rr.(*dns.SOA); ok {
				t = min(t, soa.Minttl)
			}
			if !found || t < lowest {
				lowest, found = t, true
			}
		}
	}
	return time.Duration(lowest) * time.Second, found
}
