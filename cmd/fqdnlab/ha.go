package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/scenario"
)

// preflightHA checks the HA lab's daemons, from the distribution.
func preflightHA() error {
	for _, tool := range []string{"keepalived", "conntrackd", "conntrack", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install -y keepalived conntrackd conntrack curl", tool)
		}
	}
	return nil
}

// cmdUpHA is `fqdnlab up --ha`: the HA lab until Ctrl-C.
func cmdUpHA(opt scenario.Options, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env, err := scenario.StartHA(ctx, opt)
	if err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return exitRuntime
	}
	h := env.HA
	gw1, gw2 := h.Nodes[0], h.Nodes[1]
	console, err := lab.ForwardTCP(consoleListen, gw1.NS, config.DefaultAPIListen)
	if err != nil {
		console, err = lab.ForwardTCP("127.0.0.1:0", gw1.NS, config.DefaultAPIListen)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", errors.Join(err, env.Close()))
		return exitRuntime
	}
	defer console.Close()
	fmt.Fprintf(stdout, `HA lab is up; Ctrl-C removes it. Files (configurations, logs): %s
  console (gw1)   http://%s/ui/
  fake internet   %s   (DNS %s, CDN %s; sends %s to the WAN VIP %s)
  gw1             %s   (LAN %s, WAN %s, sync %s, VRRP priority %d; keepalived pid %d)
  gw2             %s   (LAN %s, WAN %s, sync %s, VRRP priority %d; keepalived pid %d)
  device          %s   (%s, gateway and DNS: the LAN VIP %s)
try:
  ip netns exec %s dig @%s prod.update.sphere.azure.net
  ip netns exec %s ip -4 addr show dev %s          # who holds the VIP
  ip netns exec %s nft list set inet fqdngate allow4   # gw1's answers, replicated
  ip netns exec %s conntrack -L                     # flows conntrackd copied
fail over (a crash of gw1: its daemons killed, its links down):
  kill -9 %d %d; ip netns exec %s ip link set %s down
`, h.Dir, console.Addr(),
		h.Inet.Name, lab.UpstreamDNS, lab.CDNNet, lab.HALanNet, lab.HAWanVIP,
		gw1.NS.Name, gw1.LanAddr, gw1.WanAddr, gw1.SyncAddr, gw1.Priority, gw1.Keepalived.Pid(),
		gw2.NS.Name, gw2.LanAddr, gw2.WanAddr, gw2.SyncAddr, gw2.Priority, gw2.Keepalived.Pid(),
		env.Device.Name, scenario.HADevice, lab.HALanVIP,
		env.Device.Name, lab.HALanVIP, gw2.NS.Name, lab.HALanIf, gw2.NS.Name, gw2.NS.Name,
		gw1.Keepalived.Pid(), gw1.Gate.Pid(), gw1.NS.Name, lab.HALanIf)
	<-ctx.Done()
	if err := env.Close(); err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return exitRuntime
	}
	fmt.Fprintln(stdout, "HA lab removed")
	return exitOK
}
