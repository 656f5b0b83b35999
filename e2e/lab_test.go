package e2e

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
	"github.com/fqdngate/fqdngate/internal/lab/scenario"
)

// TestCDNLab is the support request, reproduced and fixed: the same
// simulated Azure Sphere device, configured from the same catalog
// profiles, behind the customer's classic FQDN firewall and behind
// fqdngate, over five rotation periods of a geo-DNS CDN.
func TestCDNLab(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl")
	opt := scenario.Options{
		Fqdngate: binary, TTL: 4 * time.Second, Refresh: 2 * time.Second,
		Duration: 20 * time.Second, Round: 2 * time.Second,
	}
	res, err := scenario.Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("demo table:\n%s", table.String())
	if left, _ := lab.Namespaces(lab.LabPrefix); len(left) > 0 {
		t.Errorf("namespaces left after the run: %v", left)
	}

	// Domain fronting: the classic firewall lets another site's name
	// through on an allowed CDN address; fqdngate resets it.
	if !res.ClassicFronting.Passed || !res.GateFronting.Reset {
		t.Errorf("fronting: classic %s; fqdngate %s", res.ClassicFronting, res.GateFronting)
	}
	// ... and explains it: fqdngate's own reason, naming the name sent.
	if f := res.GateFronting; f.Reason != "sni-mismatch" || !strings.Contains(f.Message, scenario.FrontingSNI) || !strings.Contains(table.String(), "explained: sni-mismatch: ") {
		t.Errorf("fronting not explained: reason %q, message %q", f.Reason, f.Message)
	}

	eps, session, err := scenario.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) < 19 || session.Port != lab.PortMQTT {
		t.Fatalf("endpoints from the catalog: %d, session %v", len(eps), session)
	}
	minTries := int(opt.Duration/opt.Round) - 1

	t.Run("classic firewall reproduces the failure", func(t *testing.T) {
		ct := scenario.Sum(res.Classic)
		if ct.Blocked*4 < ct.Attempts {
			t.Errorf("classic firewall blocked %d of %d: the failure is not reproduced (want at least a quarter)", ct.Blocked, ct.Attempts)
		}
		cdn := make(map[string]bool)
		for _, s := range lab.SphereSites(scenario.Hub) {
			cdn[s.Name] = s.Kind == lab.CDN
		}
		for _, st := range res.Classic.Stats {
			for addr := range st.BlockedAddrs {
				if !lab.CDNNet.Contains(addr) {
					t.Errorf("%s: blocked on %s, outside the CDN", st.Endpoint, addr)
				}
				// The device's geo pool and the firewall's are disjoint:
				// every CDN address it was blocked on is one the
				// firewall never resolved.
				if cdn[st.Host] && slicesContains(res.ClassicResolved, addr) {
					t.Errorf("%s: blocked on %s, which the firewall did resolve", st.Endpoint, addr)
				}
			}
			if cdn[st.Host] && st.OK > 0 {
				t.Errorf("%s: the device reached a geo-DNS CDN name %d times through the classic firewall", st.Endpoint, st.OK)
			}
		}
		if never, _ := res.BlockedNeverResolved(); len(never) < 6 {
			t.Errorf("only %d blocked addresses the firewall never resolved", len(never))
		}
		if res.ClassicExfilUpstream == 0 {
			t.Errorf("the corporate resolver did not forward the exfiltration name: the comparison proves nothing")
		}
	})

	t.Run("fqdngate blocks none of the allowed traffic", func(t *testing.T) {
		for _, st := range res.Gate.Stats {
			if st.Attempts < minTries || st.OK != st.Attempts {
				t.Errorf("%s: %d of %d ok (blocked %d, denied %d, failed %d; last: %s)",
					st.Endpoint, st.OK, st.Attempts, st.Blocked, st.Denied, st.Failed, st.LastErr)
			}
		}
		if res.GateDrops != 0 {
			t.Errorf("fqdngate dropped %d packets", res.GateDrops)
		}
		s := res.Gate.Session
		if !s.Survived() || s.Messages < minTries {
			t.Errorf("long-lived session: opened %d, %d messages, %d failures (%s)", s.Opened, s.Messages, s.Failures, s.LastErr)
		}
	})

	t.Run("exfiltration never reaches the upstream", func(t *testing.T) {
		if got := res.Gate.Probes[res.GateExfil]; got != "NXDOMAIN" {
			t.Errorf("exfiltration name answered %s", got)
		}
		if res.GateExfilUpstream != 0 {
			t.Errorf("exfiltration name reached the upstream %d times", res.GateExfilUpstream)
		}
	})

	t.Run("a host outside the catalog is refused", func(t *testing.T) {
		if got := res.Gate.Probes[res.Outside]; got != "NXDOMAIN" {
			t.Errorf("%s answered %s by fqdngate", res.Outside, got)
		}
		if got := res.Classic.Probes[res.Outside]; got != "NOERROR" {
			t.Errorf("%s answered %s by the corporate DNS: the lab does not serve it", res.Outside, got)
		}
	})
	if t.Failed() {
		t.Logf("fqdngate log:\n%s", res.GateLog)
	}
}

func slicesContains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestFqdnlabUpDown: Ctrl-C on `fqdnlab up` removes the lab; after a
// kill -9, `fqdnlab down` does, gateway process included.
func TestFqdnlabUpDown(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl")
	t.Cleanup(func() { _, _ = lab.Sweep(lab.LabPrefix) })
	up := func() *exec.Cmd {
		t.Helper()
		cmd, _ := startFqdnlab(t, "lab is up", 30*time.Second, "up", "--ttl", "4s")
		if n, _ := lab.Namespaces(lab.LabPrefix); len(n) != 5 {
			t.Fatalf("lab namespaces while up: %v", n)
		}
		return cmd
	}

	cmd := up()
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("fqdnlab up after Ctrl-C: %v", err)
	}
	if n, _ := lab.Namespaces(lab.LabPrefix); len(n) != 0 {
		t.Errorf("left after Ctrl-C: %v", n)
	}

	cmd = up()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if n, _ := lab.Namespaces(lab.LabPrefix); len(n) != 5 {
		t.Fatalf("after kill -9 the lab should still be there to clean up, found %v", n)
	}
	out, err := exec.Command(labBinary, "down").CombinedOutput()
	if err != nil {
		t.Fatalf("fqdnlab down: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "no lab namespace left (5 removed)") {
		t.Errorf("fqdnlab down said:\n%s", out)
	}
	if n, _ := lab.Namespaces(lab.LabPrefix); len(n) != 0 {
		t.Errorf("left after down: %v", n)
	}
	// Nothing of the lab in this namespace either: no links, no table.
	links, _ := exec.Command("ip", "-o", "link").Output()
	for _, name := range []string{"dev0", "up0", "c0", "g0", "fqgtmp"} {
		if strings.Contains(string(links), " "+name) {
			t.Errorf("link %s left in the host namespace:\n%s", name, links)
		}
	}
	tables, _ := exec.Command("nft", "list", "tables").Output()
	if strings.Contains(string(tables), lab.ClassicTable) {
		t.Errorf("table %s left in the host namespace", lab.ClassicTable)
	}
	if out, err := exec.Command("pgrep", "-f", binary+" run").Output(); err == nil && len(out) > 0 {
		t.Errorf("fqdngate still running after down: pids %s", out)
	}
}

// startFqdnlab runs fqdnlab with args and waits, up to timeout, for the
// line of its output that starts with prefix; it returns the command and
// the rest of that line.
func startFqdnlab(t *testing.T, prefix string, timeout time.Duration, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(labBinary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lab.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type line struct {
		rest  string
		found bool
	}
	got := make(chan line, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok && !found {
				found = true
				got <- line{rest, true}
			}
		}
		if !found {
			got <- line{}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	what := "fqdnlab " + strings.Join(args, " ")
	select {
	case l := <-got:
		if !l.found {
			t.Fatalf("%s ended before %q:\n%s", what, prefix, stderr.String())
		}
		return cmd, l.rest
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		t.Fatalf("%s: no %q after %s:\n%s", what, prefix, timeout, stderr.String())
	}
	return nil, ""
}
