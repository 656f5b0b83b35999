package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/miekg/dns"
	"golang.org/x/time/rate"

	"github.com/fqdngate/fqdngate/internal/dnsproxy"
	"github.com/fqdngate/fqdngate/internal/enforce"
	"github.com/fqdngate/fqdngate/internal/ledger"
)

// Bounds. A flood of drops must not grow memory: the queue between the
// NFLOG socket and attribution is fixed, the event ring is fixed, and
// drop samples (events and log lines) are rate-limited; counts are always
// kept.
const (
	queueLen       = 4096
	ringLen        = 4096
	samplesPerSec  = 50
	samplesBurst   = 200
	denialsPerHost = 64
	denialsHosts   = 4096
)

// Options configure a Monitor.
type Options struct {
	Global        bool
	MinTTL, Grace time.Duration
	Now           func() time.Time
}

// Monitor keeps the event log and the denials, and attributes dropped
// packets. It implements dnsproxy.Observer.
type Monitor struct {
	Events    *Ring
	Denials   *Denials
	Explainer *Explainer
	Latest    *LatestDrops // the latest drop per (client, address), for explain without a port
	log       *slog.Logger
	now       func() time.Time

	queue chan logged
	// drops and wouldDrops count attributed packets by reason; lost
	// counts packets that arrived while the queue was full, and nflogErrs
	// the times the kernel said it dropped log messages (buffer overrun).
	drops, wouldDrops [numReasons]atomic.Uint64
	lost, nflogErrs   atomic.Uint64

	names   nameTally
	clients clientTally
	flows   flowDrops

	samples *rate.Limiter
	sampled atomic.Uint64 // drop events not sampled into the ring and log
}

type logged struct {
	at   time.Time
	kind string // enforce.PrefixDrop, PrefixWouldDrop, PrefixDoT
	pkt  Packet
}

// numReasons is len(reasonIndex): the drop reasons and allowed.
const numReasons = 12

var reasonIndex = map[Reason]int{NeverResolved: 0, Expired: 1, OtherClient: 2, WrongPort: 3, DeniedName: 4, DoT: 5, Allowed: 6, DNSBypass: 7,
	SNIMismatch: 8, HostMismatch: 9, SNIMissing: 10, NotTLS: 11}

// New makes a monitor over the ledger.
func New(led *ledger.Ledger, o Options, log *slog.Logger) *Monitor {
	if o.Now == nil {
		o.Now = time.Now
	}
	d := NewDenials(denialsPerHost, denialsHosts)
	return &Monitor{
		Events:    NewRing(ringLen),
		Denials:   d,
		Explainer: &Explainer{Ledger: led, Denials: d, Global: o.Global, MinTTL: o.MinTTL, Grace: o.Grace},
		Latest:    NewLatestDrops(latestDropsMax),
		log:       log,
		now:       o.Now,
		queue:     make(chan logged, queueLen),
		samples:   rate.NewLimiter(samplesPerSec, samplesBurst),
	}
}

// Query records a DNS decision; denied names are remembered per client for
// denied-name attributions.
func (m *Monitor) Query(o dnsproxy.Outcome) {
	name := strings.TrimSuffix(strings.ToLower(o.Name), ".")
	ev := Event{Time: o.Time, Kind: KindQuery, Decision: o.Decision, Client: o.Client, Group: o.Group,
		Name: name, QType: dns.TypeToString[o.QType]}
	if o.Answer != nil {
		ev.Addrs, ev.Chain = o.Answer.Addrs, o.Answer.Chain
	}
	if o.Decision == dnsproxy.DecisionDenied || o.Decision == dnsproxy.DecisionWouldDeny {
		m.Denials.Add(o.Client, name, o.Time)
	}
	m.names.add(o, name)
	m.clients.add(o)
	m.Events.Add(ev)
}

// Counts reports drops and would-drops by reason, and packets not
// attributed (queue full) or lost by the kernel (overruns, a count of
// events, not packets).
func (m *Monitor) Counts() (drops, wouldDrops map[Reason]uint64, lost, overruns uint64) {
	drops, wouldDrops = make(map[Reason]uint64), make(map[Reason]uint64)
	for r, i := range reasonIndex {
		drops[r] = m.drops[i].Load()
		wouldDrops[r] = m.wouldDrops[i].Load()
	}
	return drops, wouldDrops, m.lost.Load(), m.nflogErrs.Load()
}

// ListenNFLOG subscribes to fqdngate's NFLOG group and attributes every
// packet from then on, until ctx ends. It returns once subscribed, or with
// what kept it from subscribing: the kernel drops the log of a packet
// that no one listens for, and the drops of a gateway that answered
// before it listened were counted but never explained.
func (m *Monitor) ListenNFLOG(ctx context.Context, group uint16) error {
	nf, err := nflog.Open(&nflog.Config{
		Group:    group,
		Copymode: nflog.CopyPacket,
		// Enough for the IP and transport headers.
		Bufsize: 128,
		// Batch up to 64 packets or 10 ms: a flood costs few reads.
		QThresh: 64,
		Timeout: 1,
	})
	if err != nil {
		return fmt.Errorf("nflog group %d: %w", group, err)
	}
	// A large socket buffer rides out bursts; overruns are counted.
	_ = nf.Con.SetReadBuffer(8 << 20)
	hook := func(a nflog.Attribute) int {
		if a.Payload == nil || a.Prefix == nil {
			return 0
		}
		pkt, err := DecodePacket(*a.Payload)
		if err != nil {
			return 0
		}
		l := logged{at: m.now(), kind: *a.Prefix, pkt: pkt}
		select {
		case m.queue <- l:
		default:
			m.lost.Add(1)
		}
		return 0
	}
	errfn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		m.nflogErrs.Add(1)
		return 0 // keep reading: a burst overran the buffer
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errfn); err != nil {
		nf.Close()
		return fmt.Errorf("nflog group %d: %w", group, err)
	}
	go func() {
		defer nf.Close()
		m.attribute(ctx)
	}()
	return nil
}

// attribute works through the queue until ctx ends.
func (m *Monitor) attribute(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-m.queue:
			m.Attribute(l.at, l.kind, l.pkt)
		}
	}
}

// Attribute explains one logged packet, counts it by reason and, within
// the sampling budget, records it as an event and a log line.
func (m *Monitor) Attribute(at time.Time, kind string, pkt Packet) Explanation {
	var ex Explanation
	if kind == enforce.PrefixDoT {
		ex = ExplainDoT(pkt.Src, pkt.Dst)
	} else {
		ex = explainDNSBypass(m.Explainer.Explain(at, pkt.Src, pkt.Dst, pkt.Proto, pkt.Port), pkt.Proto, pkt.Port)
	}
	would := kind == enforce.PrefixWouldDrop
	if would {
		m.wouldDrops[reasonIndex[ex.Reason]].Add(1)
	} else {
		m.drops[reasonIndex[ex.Reason]].Add(1)
	}
	m.Latest.Add(at, would, ex)
	if !m.sample(at) {
		m.sampled.Add(1)
		return ex
	}
	m.Events.Add(Event{Time: at, Kind: KindDrop, Client: pkt.Src, Drop: &ex, WouldDrop: would})
	msg := "drop"
	if would {
		msg = "would drop"
	}
	m.log.Info(msg, "reason", ex.Reason, "client", pkt.Src, "dst", pkt.Dst, "port", ex.Port, "name", ex.Name, "why", ex.Message)
	return ex
}

// sample is a token bucket: samplesPerSec, bursts of samplesBurst.
func (m *Monitor) sample(now time.Time) bool { return m.samples.AllowN(now, 1) }

// Suppressed is the number of drop events counted but not sampled.
func (m *Monitor) Suppressed() uint64 { return m.sampled.Load() }

// Explain is Explainer.Explain at the monitor's now.
func (m *Monitor) Explain(client, addr netip.Addr, proto uint8, port uint16) Explanation {
	return m.explainFlow(m.Explainer.Explain(m.now(), client, addr, proto, port))
}
