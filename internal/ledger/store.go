package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fqdngate/fqdngate/internal/policy"
)

// StoreFile is the ledger's file in the state directory.
const StoreFile = "ledger.db"

// storeFormat is written into every store; a file without it is not
// fqdngate's, and is never overwritten.
const storeFormat = "fqdngate-ledger/1"

var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	keyFormat     = []byte("format")
)

// ErrStore wraps every error about the state file; its message names the
// file and says how to recover.
var ErrStore = errors.New("ledger state file")

// Store keeps the ledger on disk (bbolt: copy-on-write pages, so a crash
// leaves the last committed state). Writes are behind: Flush writes what
// changed since the last Flush in one transaction.
type Store struct {
	db   *bolt.DB
	path string
}

// recovery is appended to errors about a file that cannot be used.
const recovery = "move it away (it is kept for inspection) and start again: fqdngate starts with an empty ledger, rebuilds the table, and devices resolve again as their answers expire"

// OpenStore opens or creates the store at path. A file that is not a
// bbolt database, is corrupt, or is another program's is an error naming
// the file; nothing in it is discarded.
func OpenStore(path string) (s *Store, err error) {
	// bbolt maps the file: a truncated file faults on the first page past
	// its end (SIGBUS). Turn that into an error for this goroutine.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%w %s: unreadable (%v; truncated?): %s", ErrStore, path, r, recovery)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w %s: locked by another process (is another fqdngate running with this state_dir?)", ErrStore, path)
		}
		return nil, fmt.Errorf("%w %s: %v: %s", ErrStore, path, err, recovery)
	}
	s = &Store{db: db, path: path}
	fresh := false
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		switch {
		case meta == nil && !hasBuckets(tx):
			fresh = true
			return nil
		case meta == nil:
			return fmt.Errorf("has no %q bucket: not an fqdngate ledger", bucketMeta)
		}
		if f := meta.Get(keyFormat); !bytes.Equal(f, []byte(storeFormat)) {
			return fmt.Errorf("format %q, want %q", f, storeFormat)
		}
		if tx.Bucket(bucketEntries) == nil {
			return fmt.Errorf("has no %q bucket", bucketEntries)
		}
		return nil
	})
	if err == nil && fresh {
		err = db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keyFormat, []byte(storeFormat)); err != nil {
				return err
			}
			_, err = tx.CreateBucket(bucketEntries)
			return err
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w %s: %v: %s", ErrStore, path, err, recovery)
	}
	return s, nil
}

func hasBuckets(tx *bolt.Tx) bool {
	k, _ := tx.Cursor().First()
	return k != nil
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// stored is an entry on disk; the key holds client, address and name.
type stored struct {
	Group   string   `json:"g"`
	Node    string   `json:"n,omitempty"` // the cluster node that answered; files before it have none
	Chain   []string `json:"c,omitempty"`
	Rules   []string `json:"r"`
	Ports   []string `json:"p"`
	TTL     int64    `json:"t"` // ms
	Learnt  int64    `json:"l"` // Unix ms
	Expires int64    `json:"e"` // Unix ms
}

func storeKey(client, addr netip.Addr, name string) []byte {
	c, a := client.As16(), addr.As16()
	k := make([]byte, 0, 32+len(name))
	k = append(k, c[:]...)
	k = append(k, a[:]...)
	return append(k, name...)
}

func parseKey(k []byte) (client, addr netip.Addr, name string, ok bool) {
	if len(k) < 33 {
		return client, addr, "", false
	}
	client = netip.AddrFrom16([16]byte(k[:16])).Unmap()
	addr = netip.AddrFrom16([16]byte(k[16:32])).Unmap()
	return client, addr, string(k[32:]), true
}

// decodeEntry reads one stored entry: the key holds client, address and
// name, the value the rest. The file is outside input (a disk fault, an
// editor, another version): whatever the ledger could not have written is
// refused, so that a damaged entry never becomes a kernel element.
func decodeEntry(k, v []byte) (Entry, error) {
	client, addr, name, ok := parseKey(k)
	if !ok {
		return Entry{}, fmt.Errorf("entry key %x is malformed", k)
	}
	bad := func(why string, args ...any) (Entry, error) {
		return Entry{}, fmt.Errorf("entry %s %s %q: %s", client, addr, name, fmt.Sprintf(why, args...))
	}
	if n, ok := policy.NormalizeName(name); !ok || n != name {
		return bad("the name is not a normalised host name")
	}
	var st stored
	if err := json.Unmarshal(v, &st); err != nil {
		return bad("%v", err)
	}
	switch {
	case st.TTL < 0:
		return bad("negative ttl %d ms", st.TTL)
	case st.Learnt < 0 || st.Expires < st.Learnt || st.Expires > maxStoredTime:
		return bad("learnt %d and expires %d (Unix ms) are not a lifetime", st.Learnt, st.Expires)
	case st.Node != "" && !ValidNodeName(st.Node):
		return bad("node %q is not a cluster node name", st.Node)
	}
	// An empty list is stored as none (omitempty), so it is read as none.
	e := Entry{Client: client, Addr: addr, Name: name, Group: st.Group, Node: st.Node, Chain: cloneOrNil(st.Chain), Rules: cloneOrNil(st.Rules),
		TTL: time.Duration(st.TTL) * time.Millisecond, Learnt: time.UnixMilli(st.Learnt), Expires: time.UnixMilli(st.Expires)}
	for _, p := range st.Ports {
		pr, err := policy.ParsePort(p)
		if err != nil {
			return bad("%v", err)
		}
		e.Ports = append(e.Ports, pr)
	}
	return e, nil
}

// nodeName is what a cluster node may be called (config's cluster.node):
// a NATS subject token, without '.', '*', '>' or spaces.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidNodeName reports whether s can name a cluster node (and a site).
func ValidNodeName(s string) bool { return nodeName.MatchString(s) }

// maxStoredTime bounds the times of an entry (Unix ms, the year 2262):
// the ledger keeps them as Unix nanoseconds in an int64.
const maxStoredTime = math.MaxInt64 / int64(time.Millisecond)

// encodeEntry is the inverse of decodeEntry.
func encodeEntry(e Entry) (k, v []byte, err error) {
	st := stored{Group: e.Group, Node: e.Node, Chain: e.Chain, Rules: e.Rules, TTL: e.TTL.Milliseconds(),
		Learnt: e.Learnt.UnixMilli(), Expires: e.Expires.UnixMilli()}
	for _, p := range e.Ports {
		st.Ports = append(st.Ports, p.String())
	}
	v, err = json.Marshal(st)
	return storeKey(e.Client, e.Addr, e.Name), v, err
}

// Load reads every entry. An entry that cannot be read is an error naming
// the file and the entry's key: the file is damaged and is not silently
// trimmed.
func (s *Store) Load() (out []Entry, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w %s: unreadable (%v): %s", ErrStore, s.path, r, recovery)
		}
	}()
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v: %s", ErrStore, s.path, err, recovery)
	}
	return out, nil
}

// Write stores written entries and deletes removed ones in one
// transaction (fsync'd by bbolt before it returns).
func (s *Store) Write(written []Entry, removed []Key) error {
	if len(written)+len(removed) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		for _, k := range removed {
			if err := b.Delete(storeKey(k.Client, k.Addr, k.Name)); err != nil {
				return err
			}
		}
		for _, e := range written {
			k, v, err := encodeEntry(e)
			if err != nil {
				return err
			}
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w %s: write: %v", ErrStore, s.path, err)
	}
	return nil
}

// Flush writes the ledger's changes since the last Flush.
func (s *Store) Flush(l *Ledger) error {
	written, removed := l.TakeChanges()
	if err := s.Write(written, removed); err != nil {
		// Keep them for the next attempt rather than lose them.
		l.mu.Lock()
		for _, e := range written {
			l.changed[Key{e.Client, e.Addr, e.Name}] = struct{}{}
		}
		for _, k := range removed {
			l.changed[k] = struct{}{}
		}
		l.mu.Unlock()
		return err
	}
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// EnsureDir makes the state directory (0700) if it is missing.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state_dir %s: %w", dir, err)
	}
	return nil
}
