package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultPort is the embedded server's port when listen names none.
const DefaultPort = 6222

// peerUser is the account the other nodes use on this node's embedded
// server. They may read this node's stream and nothing else: they cannot
// publish answers in this node's name, nor change or purge its stream.
const peerUser = "fqdngate-peer"

// localUser is this process's own connection (in process, never on the
// network); its password is made afresh at every start.
const localUser = "fqdngate-local"

// embedded runs a JetStream server inside fqdngate, listening where the
// peers connect.
type embedded struct {
	srv       *server.Server
	localPass string
}

func startEmbedded(c Config, log *slog.Logger) (*embedded, error) {
	pass := make([]byte, 16)
	if _, err := rand.Read(pass); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	e := &embedded{localPass: hex.EncodeToString(pass)}
	store := c.StoreDir
	if store == "" {
		// Memory streams only, but the server wants a directory.
		dir, err := os.MkdirTemp("", "fqdngate-jetstream-")
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		store = dir
	} else if err := os.MkdirAll(store, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: jetstream store: %w", err)
	}
	listen := c.Listen
	if !listen.IsValid() {
		listen = netip.AddrPortFrom(netip.IPv6Loopback(), DefaultPort)
	}
	opts := &server.Options{
		ServerName: c.Node,
		Host:       listen.Addr().String(),
		Port:       int(listen.Port()),
		JetStream:  true,
		StoreDir:   filepath.Clean(store),
		// Room for this node's one stream and the consumers' state.
		JetStreamMaxMemory:     streamBytes(c.MaxEntries) + 64<<20,
		JetStreamMaxStore:      streamBytes(c.MaxEntries) + 64<<20,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		MaxPayload:             2 * maxMessageBytes,
		Users: []*server.User{
			{Username: localUser, Password: e.localPass},
			{Username: peerUser, Password: c.Token, Permissions: peerPermissions()},
		},
	}
	if c.Token == "" {
		// A loopback-only test or lab node: no secret configured (the
		// configuration requires one off loopback); peers use an empty one.
		opts.Users[1].Password = ""
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded nats server: %w", err)
	}
	s.SetLoggerV2(natsLog{log.With("part", "nats")}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("cluster: embedded nats server did not start listening on %s", listen)
	}
	e.srv = s
	return e, nil
}

func (e *embedded) close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// peerPermissions let a peer run ordered consumers on this server's
// streams (the JetStream API of consumers and stream info, flow control
// and acks, replies on its inbox), and nothing more. A peer publishes
// into no inbox: a message it put there would reach another consumer as
// if the stream had delivered it. The node's own connection takes its
// inboxes under localInbox, where peers cannot listen.
func peerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{"$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
				"$JS.API.CONSUMER.>", "$JS.FC.>", "$JS.ACK.>"},
		},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// localInbox is the inbox prefix of the node's own connection to its
// embedded server.
const localInbox = "_FQDNGATE_LOCAL"

// natsLog puts the embedded server's own lines into fqdngate's log.
type natsLog struct{ l *slog.Logger }

func (n natsLog) Noticef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLog) Warnf(f string, v ...any)   { n.l.Warn(fmt.Sprintf(f, v...)) }
func (n natsLog) Fatalf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLog) Errorf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLog) Debugf(f string, v ...any)  { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLog) Tracef(f string, v ...any)  {}
