package lab

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// Proc is a process the lab started in a namespace, in a process group of
// its own, so that Kill and Stop reach the children it forks (keepalived's
// VRRP process).
type Proc struct {
	Name string
	Log  *SyncBuffer
	cmd  *exec.Cmd
	// done is closed when the process has been waited for; err is its
	// exit status then.
	done chan struct{}
	err  error
}

// StartProc starts name with args in ns, its output in Log. If the lab
// process dies, the kernel kills this one (Pdeathsig).
func StartProc(ns *NS, name string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Log: &SyncBuffer{}, done: make(chan struct{})}
	p.cmd = ns.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.Log, p.Log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns.Name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL to the process's group (a crash: nothing is cleaned
// up) and waits for the process.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM to the process's group and waits up to timeout, then
// kills it. The error says when it had to be killed.
func (p *Proc) Stop(timeout time.Duration) error {
	if ok, _ := p.Exited(); ok {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		p.Kill()
		return errors.New(p.Name + " did not stop within " + timeout.String() + " of SIGTERM")
	}
}
