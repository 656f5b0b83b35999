// Command fqdnlab runs the CDN lab of the support request on this machine,
// in network namespaces, with no network access: a fake internet whose DNS
// answers like Akamai (CNAME chains, geo pools, 20-second rotation), the
// customer's classic FQDN firewall and fqdngate side by side, each with a
// simulated Azure Sphere device. Needs root, ip (iproute2) and nft.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fqdngate/fqdngate/internal/config"
	"github.com/fqdngate/fqdngate/internal/lab"
	"github.com/fqdngate/fqdngate/internal/lab/scenario"
)

const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
	// exitVerdict is demo's code when fqdngate blocked allowed traffic
	// or let the exfiltration name out: the demo's claim did not hold.
	exitVerdict = 3
)

const usage = `fqdnlab: the CDN lab (network namespaces, root, no network needed)

Usage:
  fqdnlab demo [--fqdngate PATH] [--duration D] [--ttl D]
                 run the Azure Sphere device behind the classic FQDN firewall and
                 behind fqdngate side by side, print what each could reach
  fqdnlab up   [--fqdngate PATH] [--ttl D] [--ha]
                 build the lab and keep it until Ctrl-C (explore with ip netns exec);
                 --ha: two fqdngate gateways with keepalived and conntrackd, a VIP
  fqdnlab down   remove every lab namespace left behind (with its links and tables)

Exit codes: 0 ok, 1 runtime failure, 2 bad usage, 3 demo verdict failed.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "up":
		return cmdUp(args[1:], stdout, stderr)
	case "down":
		return cmdDown(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "fqdnlab: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

type labFlags struct {
	fs       *flag.FlagSet
	binary   *string
	duration *time.Duration
	ttl      *time.Duration
	// ha is up's --ha; nil for demo.
	ha *bool
}

func newFlags(name string, stderr io.Writer, withDuration bool) labFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := scenario.Defaults()
	f := labFlags{fs: fs,
		binary: fs.String("fqdngate", "", "the fqdngate `binary` (default: next to fqdnlab, then $PATH)"),
		ttl:    fs.Duration("ttl", d.TTL, "TTL and rotation period of the fake CDN's answers"),
	}
	if withDuration {
		f.duration = fs.Duration("duration", d.Duration, "how long the devices run")
	} else {
		f.ha = fs.Bool("ha", false, "the HA lab: two gateways with keepalived and conntrackd, a VIP, one device")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: fqdnlab %s [flags]\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	return f
}

// parse returns an exit code when the command should stop now.
func (f labFlags) parse(args []string) (int, bool) {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(f.fs.Output(), "unexpected argument %q\n", f.fs.Arg(0))
		return exitUsage, true
	}
	if *f.ttl < 2*time.Second || *f.ttl > 10*time.Minute {
		fmt.Fprintf(f.fs.Output(), "--ttl %s is outside 2s..10m\n", *f.ttl)
		return exitUsage, true
	}
	if f.duration != nil && (*f.duration < 5*time.Second || *f.duration > time.Hour) {
		fmt.Fprintf(f.fs.Output(), "--duration %s is outside 5s..1h\n", *f.duration)
		return exitUsage, true
	}
	return 0, false
}

// options fills the scenario's options from the flags; the classic
// firewall re-resolves twice per TTL, as an attentive firewall would.
func (f labFlags) options(stderr io.Writer) (scenario.Options, error) {
	o := scenario.Defaults()
	o.TTL = *f.ttl
	o.Refresh = max(*f.ttl/2, time.Second)
	if f.duration != nil {
		o.Duration = *f.duration
	}
	o.Progress = stderr
	bin, err := findFqdngate(*f.binary)
	o.Fqdngate = bin
	return o, err
}

func findFqdngate(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "fqdngate")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("fqdngate")
	if err != nil {
		return "", errors.New("no fqdngate binary next to fqdnlab or in $PATH; build it (make build) or give --fqdngate")
	}
	return p, nil
}

// preflight checks what the lab needs, with a message that says how to
// get it.
func preflight() error {
	if !lab.IsRoot() {
		return errors.New("the lab makes network namespaces and needs root: run it with sudo")
	}
	for _, tool := range []string{"ip", "nft", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install -y nftables iproute2 procps", tool)
		}
	}
	return nil
}

// prepare parses a lab command's flags and checks the machine; stop is
// true, with the exit code, when the command should end here.
func prepare(name string, args []string, stderr io.Writer, withDuration bool) (opt scenario.Options, ha bool, code int, stop bool) {
	f := newFlags(name, stderr, withDuration)
	if code, stop := f.parse(args); stop {
		return opt, false, code, true
	}
	ha = f.ha != nil && *f.ha
	if ha {
		if err := preflightHA(); err != nil {
			fmt.Fprintln(stderr, "fqdnlab:", err)
			return opt, ha, exitRuntime, true
		}
	}
	opt, err := f.options(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return opt, ha, exitUsage, true
	}
	if err := preflight(); err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return opt, ha, exitRuntime, true
	}
	return opt, ha, 0, false
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	opt, _, code, quit := prepare("demo", args, stderr, true)
	if quit {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := scenario.Run(ctx, opt)
	if err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return exitRuntime
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "fqdnlab: interrupted; the lab is removed")
		return exitRuntime
	}
	fmt.Fprintln(stdout)
	if err := res.WriteTable(stdout); err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return exitRuntime
	}
	if !res.GateHeld() {
		fmt.Fprintf(stderr, "fqdnlab: fqdngate did not hold up; its log:\n%s", res.GateLog)
		return exitVerdict
	}
	return exitOK
}

func cmdUp(args []string, stdout, stderr io.Writer) int {
	opt, ha, code, quit := prepare("up", args, stderr, false)
	if quit {
		return code
	}
	if ha {
		return cmdUpHA(opt, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env, err := scenario.Start(ctx, opt)
	if err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return exitRuntime
	}
	l := env.Lab
	console, err := forwardConsole(l)
	if err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", errors.Join(err, env.Close()))
		return exitRuntime
	}
	defer console.Close()
	fmt.Fprintf(stdout, `lab is up; Ctrl-C removes it.
  console         http://%s/ui/   (fqdngate's API in %s, forwarded from this host)
  fake internet   %s   (DNS %s, CDN %s)
  classic gw      %s   (corporate DNS %s, firewall table inet %s)
  classic device  %s   (%s)
  fqdngate gw     %s   (fqdngate on %s)
  fqdngate device %s   (%s)
try (dig is in Debian's dnsutils):
  ip netns exec %s dig @%s prod.update.sphere.azure.net
  ip netns exec %s dig @%s prod.update.sphere.azure.net
  ip netns exec %s nft list table inet fqdngate
  ip netns exec %s nft list table inet %s
`, console.Addr(), l.GateGW.Name, l.Inet.Name, lab.UpstreamDNS, lab.CDNNet, l.ClassicGW.Name, lab.ClassicGW, lab.ClassicTable,
		l.ClassicDev.Name, lab.ClassicDevice, l.GateGW.Name, lab.GateGW, l.GateDev.Name, lab.GateDevice,
		l.GateDev.Name, lab.GateGW, l.ClassicDev.Name, lab.ClassicGW, l.GateGW.Name, l.ClassicGW.Name, lab.ClassicTable)
	<-ctx.Done()
	if err := env.Close(); err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return exitRuntime
	}
	fmt.Fprintln(stdout, "lab removed")
	return exitOK
}

func cmdDown(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if !lab.IsRoot() {
		fmt.Fprintln(stderr, "fqdnlab: down needs root: run it with sudo")
		return exitRuntime
	}
	removed, err := lab.Sweep(lab.LabPrefix)
	for _, n := range removed {
		fmt.Fprintln(stdout, "removed namespace", n)
	}
	if err != nil {
		fmt.Fprintln(stderr, "fqdnlab:", err)
		return exitRuntime
	}
	left, err := lab.Namespaces(lab.LabPrefix)
	if err != nil || len(left) > 0 {
		fmt.Fprintf(stderr, "fqdnlab: still there: %v %v\n", left, err)
		return exitRuntime
	}
	// The HA lab's files (its daemons' configurations, sockets and logs).
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), lab.LabPrefix+"ha-*"))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintln(stderr, "fqdnlab:", err)
			return exitRuntime
		}
		fmt.Fprintln(stdout, "removed", d)
	}
	fmt.Fprintf(stdout, "no lab namespace left (%d removed)\n", len(removed))
	return exitOK
}

// consoleListen is where `fqdnlab up` offers the console on the host; a
// busy port falls back to any free one.
const consoleListen = "127.0.0.1:9054"

// forwardConsole makes the gateway's API, which listens on loopback inside
// its namespace, reachable from a browser on the host, without touching the
// host's network configuration.
func forwardConsole(l *lab.Lab) (*lab.TCPForward, error) {
	f, err := lab.ForwardTCP(consoleListen, l.GateGW, config.DefaultAPIListen)
	if err != nil {
		f, err = lab.ForwardTCP("127.0.0.1:0", l.GateGW, config.DefaultAPIListen)
	}
	return f, err
}
