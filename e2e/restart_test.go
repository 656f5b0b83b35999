package e2e

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fqdngate/fqdngate/internal/api"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// kernelElems lists the elements of fqdngate's allow4 set as
// "client . addr . proto . port", the way nft prints them.
func (tp *topo) kernelElems(t *testing.T) []string {
	t.Helper()
	out, err := tp.gw.Run("nft", "list", "set", "inet", "fqdngate", "allow4")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	var elems []string
	for _, m := range regexp.MustCompile(`(\d+\.\d+\.\d+\.\d+ \. \d+\.\d+\.\d+\.\d+ \. (?:tcp|udp) \. \d+)`).FindAllStringSubmatch(flat, -1) {
		elems = append(elems, m[1])
	}
	slices.Sort(elems)
	return elems
}

// ledgerElems lists the elements the daemon's live ledger entries need.
func (tp *topo) ledgerElems(t *testing.T) []string {
	t.Helper()
	var led api.LedgerResponse
	tp.apiGet(t, "/api/v1/ledger?limit=10000", &led)
	var elems []string
	for _, e := range led.Entries {
		if !e.Live || !e.Addr.Is4() {
			continue
		}
		for _, p := range e.Ports {
			proto, port, _ := strings.Cut(p, "/")
			elems = append(elems, e.Client.String()+" . "+e.Addr.String()+" . "+proto+" . "+port)
		}
	}
	slices.Sort(elems)
	return slices.Compact(elems)
}

// TestCrashRestart: kill -9 in the middle of traffic. While fqdngate is
// down, established flows and unexpired answers keep working and new names
// fail closed; after a restart everything resumes with no manual step, and
// the ledger and the kernel set agree exactly.
func TestCrashRestart(t *testing.T) {
	tp := newTopoClients(t, "enforce", `clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: web
        fqdn: ["www.example.com", "rot.example.com"]
        ports: ["tcp/443", "tcp/8883"]
`)
	addr := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
	// A long-lived MQTT-style session on 8883.
	session, err := connect(tp.devA, addr, 8883, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	rot := tp.addrsOf(t, tp.devB, "rot.example.com.", dns.TypeA, gwDevAddr4)[0]
	time.Sleep(3 * flushEveryInTests) // the ledger is written behind

	_ = tp.proc.Process.Kill()
	<-tp.exited

	t.Run("down: established session flows", func(t *testing.T) {
		if err := echo(session, "while down"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("down: unexpired answer still works", func(t *testing.T) {
		c, err := connect(tp.devA, addr, 443, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("down: new names fail closed", func(t *testing.T) {
		if r, err := tp.resolve(tp.devA, "rot.example.com.", dns.TypeA, gwDevAddr4); err == nil {
			t.Fatalf("a name resolved while fqdngate was down: %v", r)
		}
		if _, err := connect(tp.devA, rot, 443, dropWait); !dropped(err) {
			t.Fatalf("an address A never got is open: %v", err)
		}
	})

	tp.launch()
	t.Run("up again: everything resumes", func(t *testing.T) {
		if err := echo(session, "after restart"); err != nil {
			t.Fatal(err)
		}
		c, err := connect(tp.devA, addr, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("restored answer: %v", err)
		}
		c.Close()
		c, err = connect(tp.devB, rot, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("B's restored answer: %v", err)
		}
		c.Close()
		fresh := tp.addrsOf(t, tp.devA, "rot.example.com.", dns.TypeA, gwDevAddr4)[0]
		c, err = connect(tp.devA, fresh, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("new answer after restart: %v", err)
		}
		c.Close()
	})
	t.Run("up again: ledger and kernel agree exactly", func(t *testing.T) {
		k, l := tp.kernelElems(t), tp.ledgerElems(t)
		if len(k) < 6 || !slices.Equal(k, l) {
			t.Errorf("kernel set:\n  %s\nledger:\n  %s", strings.Join(k, "\n  "), strings.Join(l, "\n  "))
		}
		if !strings.Contains(tp.stderr.String(), "ledger restored") {
			t.Errorf("no restore logged:\n%s", tp.stderr.String())
		}
	})
}

// flushEveryInTests mirrors gateway.flushEvery.
const flushEveryInTests = 200 * time.Millisecond

const reloadBefore = `clients:
  - name: devices
    cidrs: ["192.0.2.0/24", "2001:db8:1::/64"]
    rules:
      - name: web
        fqdn: ["www.example.com"]
        ports: ["tcp/443"]
      - name: other
        fqdn: ["rot.example.com"]
        ports: ["tcp/443"]
  - name: lab
    cidrs: ["192.0.2.11/32"]
    rules:
      - name: web
        fqdn: ["www.example.com"]
        ports: ["tcp/443"]
`

// TestReload: SIGHUP with a policy that removes a rule drops its
// addresses within a second and disturbs nothing else; an invalid file
// leaves the running policy in force and says why; SIGTERM writes the
// ledger, which the next start restores.
func TestReload(t *testing.T) {
	tp := newTopoClients(t, "enforce", reloadBefore)
	www := tp.addrsOf(t, tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4)[0]
	rot := tp.addrsOf(t, tp.devA, "rot.example.com.", dns.TypeA, gwDevAddr4)[0]
	tp.addrsOf(t, tp.devB, "www.example.com.", dns.TypeA, gwDevAddr4)
	established, err := connect(tp.devA, www, 443, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()

	rewrite := func(clients string) {
		t.Helper()
		b, err := os.ReadFile(tp.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		i := strings.Index(string(b), "clients:")
		j := strings.Index(string(b), "state_dir:")
		if err := os.WriteFile(tp.cfgPath, []byte(string(b[:i])+clients+string(b[j:])), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("rule removed: its addresses dropped within a second", func(t *testing.T) {
		rewrite(strings.Replace(reloadBefore, `      - name: web
        fqdn: ["www.example.com"]
        ports: ["tcp/443"]
      - name: other`, `      - name: other`, 1))
		start := time.Now()
		if err := tp.proc.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := connect(tp.devA, www, 443, 300*time.Millisecond); dropped(err) {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("A still reaches www's address %s after 1s", www)
			}
		}
		t.Logf("withdrawn within %s of SIGHUP", time.Since(start).Round(time.Millisecond))
		if r, err := tp.resolve(tp.devA, "www.example.com.", dns.TypeA, gwDevAddr4); err != nil || r.Rcode != dns.RcodeNameError {
			t.Errorf("A asking www after reload: %v %v", r, err)
		}
	})
	t.Run("other rules, clients and established flows undisturbed", func(t *testing.T) {
		for _, c := range []struct {
			name string
			ns   func() (net.Conn, error)
		}{
			{"A's other rule", func() (net.Conn, error) { return connect(tp.devA, rot, 443, 2*time.Second) }},
			{"B's www", func() (net.Conn, error) { return connect(tp.devB, www, 443, 2*time.Second) }},
		} {
			conn, err := c.ns()
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			conn.Close()
		}
		if err := echo(established, "still here"); err != nil {
			t.Errorf("established flow cut by the reload: %v", err)
		}
	})
	t.Run("invalid file: rejected, old policy in force, reported", func(t *testing.T) {
		good, _ := os.ReadFile(tp.cfgPath)
		defer os.WriteFile(tp.cfgPath, good, 0o600)
		bad := strings.Replace(string(good), "mode: enforce", "mode: enforcing", 1)
		if err := os.WriteFile(tp.cfgPath, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := tp.proc.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(tp.stderr.String(), "reload rejected") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if log := tp.stderr.String(); !strings.Contains(log, `mode: \"enforcing\" is not one of observe, enforce`) || !strings.Contains(log, tp.cfgPath+":1:7") {
			t.Errorf("rejection not reported with file, line and field:\n%s", log)
		}
		conn, err := connect(tp.devA, rot, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("old policy not in force after a rejected reload: %v", err)
		}
		conn.Close()
		// The API says the same, with a 409.
		status, body := tp.apiPost(t, "/api/v1/reload")
		if status != http.StatusConflict || !strings.Contains(body, "enforcing") {
			t.Errorf("POST /api/v1/reload: %d %s", status, body)
		}
	})
	t.Run("SIGTERM writes the ledger; the next start restores it", func(t *testing.T) {
		_ = tp.proc.Process.Signal(syscall.SIGTERM)
		<-tp.exited
		if !strings.Contains(tp.stderr.String(), "ledger written") {
			t.Errorf("no ledger flush at SIGTERM:\n%s", tp.stderr.String())
		}
		tp.launch()
		var led api.LedgerResponse
		tp.apiGet(t, "/api/v1/ledger?client="+devBAddr4+"&name=www.example.com", &led)
		if len(led.Entries) != 1 || !led.Entries[0].Live {
			t.Errorf("B's www entry after restart: %+v", led.Entries)
		}
		conn, err := connect(tp.devB, www, 443, 2*time.Second)
		if err != nil {
			t.Fatalf("B's answer after a clean restart: %v", err)
		}
		conn.Close()
	})
}

// apiPost posts to the daemon's API from inside the gateway namespace.
func (tp *topo) apiPost(t *testing.T, path string) (int, string) {
	t.Helper()
	c := tp.apiClient()
	resp, err := c.Post(apiBase+path, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text())
	}
	return resp.StatusCode, b.String()
}

// TestBadStateFile: a truncated or corrupt state file stops the start
// with an error that names the file and the way out; moving the file away
// is the documented recovery, and works.
func TestBadStateFile(t *testing.T) {
	labtest.Require(t, "ip", "nft")
	ns := labtest.NS(t, "state")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	state := filepath.Join(dir, "state")
	os.WriteFile(cfg, []byte(`mode: enforce
listen: {dns: ["127.0.0.1:5300"], api: "127.0.0.1:9300"}
upstreams: ["198.51.100.53"]
enforcer: {hook: output, scope: global}
clients:
  - name: host
    cidrs: ["127.0.0.0/8"]
state_dir: `+state+"\n"), 0o600)
	run := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := ns.Command(binary, "run", "--config", cfg)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			return "", err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return out.String(), err
		case <-time.After(3 * time.Second):
			// Still running: it started. Stop it cleanly.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-ctx.Done():
				_ = cmd.Process.Kill()
			}
			return out.String(), nil
		}
	}
	// A good file first.
	if out, err := run(); err != nil || !strings.Contains(out, "ledger written") {
		t.Fatalf("first start: %v\n%s", err, out)
	}
	file := filepath.Join(state, "ledger.db")
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, damage := range []struct {
		name string
		data []byte
	}{
		{"truncated", good[:len(good)/3]},
		// Both meta pages overwritten: bbolt survives one bad meta page
		// (it keeps two for that), not both.
		{"corrupt", []byte(strings.Repeat("garbage!", len(good)/8))},
	} {
		t.Run(damage.name, func(t *testing.T) {
			if err := os.WriteFile(file, damage.data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := run()
			var ee interface{ ExitCode() int }
			if err == nil || !asExit(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("started on a %s state file: %v\n%s", damage.name, err, out)
			}
			for _, want := range []string{file, "move it away"} {
				if !strings.Contains(out, want) {
					t.Errorf("error lacks %q:\n%s", want, out)
				}
			}
			if after, _ := os.ReadFile(file); string(after) != string(damage.data) {
				t.Errorf("the damaged file was changed")
			}
			// The recovery the error gives: move it away and start.
			if err := os.Rename(file, file+".bad"); err != nil {
				t.Fatal(err)
			}
			if out, err := run(); err != nil || !strings.Contains(out, "ledger restored") {
				t.Errorf("start after moving the file away: %v\n%s", err, out)
			}
		})
	}
}

func asExit(err error, target *interface{ ExitCode() int }) bool {
	e, ok := err.(interface{ ExitCode() int })
	if ok {
		*target = e
	}
	return ok
}
