// Command fqdngate is a DNS resolver and firewall in one: it answers only
// for allowed names, and installs exactly the answered addresses, for the
// asking client and the rule's ports, in nftables before releasing the
// answer. See README.md and DESIGN.md.
//
// The CLI is a tree of cobra commands, one per file (cmd_*.go): each binds
// its flags to an options struct and its RunE calls into the packages.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// Exit codes (DESIGN section 6).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
	// exitCheckFailed is check's code when a required endpoint failed.
	exitCheckFailed = 3
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and maps its outcome to an exit code:
// errors of the command line itself (unknown command or flag, a bad flag
// value, missing or extra arguments) are usage errors, 2, with a hint to
// --help; a command's own errors carry their code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	if len(args) == 0 {
		// Without a command: the usage, on stderr, exit 2.
		fmt.Fprint(stderr, root.UsageString())
		return exitUsage
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		ee = &exitError{code: exitUsage, err: err, hint: true}
	}
	if ee.err != nil {
		if ee.bare {
			fmt.Fprintln(stderr, ee.err)
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), ee.err)
		}
	}
	if ee.hint {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return ee.code
}

// exitError is a command's failure with its exit code. A nil err has
// been reported already (or needs no words: check's 3).
type exitError struct {
	code int
	err  error
	// hint adds "Run '... --help'"; bare prints err without the
	// command's name (config errors name their file already).
	hint, bare bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a mistake on the command line found by a command.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...), hint: true}
}

// inputError is input the user must fix (a file, a profile name): 2,
// without the --help hint.
func inputError(err error) error { return &exitError{code: exitUsage, err: err} }

// runtimeError is a failure at run time: 1.
func runtimeError(err error) error { return &exitError{code: exitRuntime, err: err} }

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
