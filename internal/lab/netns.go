package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace the lab makes, so that
// leftovers of a crashed run can be found and removed (Sweep).
const Prefix = "fqg-"

// NS is a named network namespace (/run/netns/NAME).
type NS struct {
	Name string
	fd   int
}

// NewNS creates a namespace named Prefix+role+"-"+random, with loopback up.
func NewNS(role string) (*NS, error) {
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := Prefix + role + "-" + hex.EncodeToString(rnd[:])
	if _, err := run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		_, _ = run("ip", "netns", "del", name)
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	ns := &NS{Name: name, fd: fd}
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	// A lab has no duplicate addresses to detect, and DAD would hold every
	// IPv6 address (link-local ones too) tentative for a second or more.
	for _, key := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := ns.Sysctl(key, "0"); err != nil {
			ns.Delete()
			return nil, err
		}
	}
	return ns, nil
}

// FD is the namespace's file descriptor, for nftables.WithNetNSFd.
func (ns *NS) FD() int { return ns.fd }

// Delete removes the namespace; its links and nftables tables go with it.
func (ns *NS) Delete() error {
	if ns.fd > 0 {
		unix.Close(ns.fd)
		ns.fd = 0
	}
	_, err := run("ip", "netns", "del", ns.Name)
	return err
}

// Run runs a command inside the namespace and returns its output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Do runs f on an OS thread that is inside the namespace. Sockets f opens
// stay in the namespace after Do returns.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open own namespace: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns.Name, err)
			runtime.UnlockOSThread()
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the goroutine exits and the runtime
			// throws the thread away instead of reusing it in the wrong
			// namespace.
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", ns.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Veth joins two namespaces with a veth pair named a and b.
func Veth(nsA *NS, a string, nsB *NS, b string) error {
	tmpA, tmpB := "fqgtmp"+a, "fqgtmp"+b
	tmpA, tmpB = tmpA[:min(len(tmpA), 15)], tmpB[:min(len(tmpB), 15)]
	if _, err := nsA.Run("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB, "netns", nsB.Name); err != nil {
		return err
	}
	if _, err := nsA.Run("ip", "link", "set", tmpA, "name", a, "up"); err != nil {
		return err
	}
	_, err := nsB.Run("ip", "link", "set", tmpB, "name", b, "up")
	return err
}

// LabPrefix starts the names of the CDN lab's namespaces (fqdnlab), so
// that `fqdnlab down` removes a lab without touching the namespaces of
// tests running at the same time.
const LabPrefix = Prefix + "lab-"

// Sweep deletes every namespace whose name starts with prefix, after
// killing the processes still in it (a gateway left by a killed run), and
// returns their names.
func Sweep(prefix string) ([]string, error) {
	names, err := Namespaces(prefix)
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs error
	for _, name := range names {
		if pids, err := run("ip", "netns", "pids", name); err == nil {
			for _, f := range strings.Fields(pids) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		if _, err := run("ip", "netns", "del", name); err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		gone = append(gone, name)
	}
	return gone, errs
}

// Namespaces lists the namespaces whose name starts with prefix.
func Namespaces(prefix string) ([]string, error) {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names, nil
}

func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Sysctl sets a sysctl inside the namespace.
func (ns *NS) Sysctl(key, value string) error {
	_, err := ns.Run("sysctl", "-q", "-w", key+"="+value)
	return err
}

// WaitIPv6 waits until no IPv6 address in the namespace is tentative.
func (ns *NS) WaitIPv6(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := ns.Run("ip", "-6", "addr", "show", "tentative")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: IPv6 addresses still tentative after %s:\n%s", ns.Name, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// IsRoot reports whether the process can make namespaces.
func IsRoot() bool { return os.Geteuid() == 0 }
