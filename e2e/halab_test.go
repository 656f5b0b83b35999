package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// TestFqdnlabUpHA: `fqdnlab up --ha` builds the HA lab, whose device
// resolves a catalog name through the VIP; Ctrl-C removes it, daemons and
// files included, and after a kill -9 `fqdnlab down` does.
func TestFqdnlabUpHA(t *testing.T) {
	labtest.Require(t, "ip", "nft", "sysctl", "keepalived", "conntrackd", "conntrack", "curl")
	t.Cleanup(func() { _, _ = lab.Sweep(lab.LabPrefix) })
	const namespaces = 5 // inet, lan, gw1, gw2, the device
	up := func() (*exec.Cmd, string) {
		t.Helper()
		cmd, dir := startFqdnlab(t, "HA lab is up; Ctrl-C removes it. Files (configurations, logs): ", 90*time.Second, "up", "--ha", "--ttl", "4s")
		if n, _ := lab.Namespaces(lab.LabPrefix); len(n) != namespaces {
			t.Fatalf("HA lab namespaces while up: %v", n)
		}
		return cmd, dir
	}
	gone := func(when, dir string) {
		t.Helper()
		if n, _ := lab.Namespaces(lab.LabPrefix); len(n) != 0 {
			t.Errorf("%s: namespaces left: %v", when, n)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: %s is still there (%v)", when, dir, err)
		}
		// Every daemon of the lab ran with a file of dir on its command line.
		if out, err := exec.Command("pgrep", "-f", dir).Output(); err == nil && len(out) > 0 {
			t.Errorf("%s: processes of the lab still running: pids %s", when, out)
		}
	}

	cmd, dir := up()
	names, _ := lab.Namespaces(lab.LabPrefix + "dev-")
	if len(names) != 1 {
		t.Fatalf("device namespace: %v", names)
	}
	dev := &lab.NS{Name: names[0]}
	out, err := dev.Run("dig", "+short", "+time=2", "+tries=3", "@"+lab.HALanVIP.String(), "prod.update.sphere.azure.net", "A")
	if err != nil {
		t.Errorf("dig through the VIP: %v", err)
	} else if _, perr := netip.ParseAddr(strings.TrimSpace(lastLine(out))); perr != nil {
		t.Errorf("dig through the VIP: no address in %q", out)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("fqdnlab up --ha after Ctrl-C: %v", err)
	}
	gone("after Ctrl-C", dir)

	cmd, dir = up()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	out2, err := exec.Command(labBinary, "down").CombinedOutput()
	if err != nil {
		t.Fatalf("fqdnlab down: %v\n%s", err, out2)
	}
	if !strings.Contains(string(out2), "removed "+dir) {
		t.Errorf("fqdnlab down did not remove %s:\n%s", dir, out2)
	}
	gone("after kill -9 and down", dir)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
