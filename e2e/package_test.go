package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fqdngate/fqdngate/internal/lab/labtest"
)

// TestDebianPackage builds the package as `make deb` does, checks it with
// lintian, installs it on this machine, validates the installed example
// configuration with the installed binary, and purges it: nothing of it
// may be left behind.
func TestDebianPackage(t *testing.T) {
	labtest.Require(t, "make", "dpkg", "lintian", "gzip")
	if out, err := exec.Command("dpkg-query", "-W", "fqdngate").CombinedOutput(); err == nil {
		t.Fatalf("a fqdngate package is installed already; the test would replace it: %s", out)
	}
	dir := t.TempDir()
	const version = "0.0.0~e2e"
	deb := filepath.Join(dir, "fqdngate_"+version+"_"+goarch(t)+".deb")
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("make", "-C", "..", "deb", "VERSION="+version, "BIN="+dir, "DEBBUILD="+filepath.Join(dir, "build"))
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make deb wrote no %s: %v", deb, err)
	}
	// --fail-on error: warnings are reported, errors fail the test.
	if out, err := exec.Command("lintian", "--fail-on", "error", "--tag-display-limit", "0", deb).CombinedOutput(); err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}

	t.Cleanup(func() {
		// Purge also when the test failed half way.
		if out, err := exec.Command("dpkg", "--purge", "fqdngate").CombinedOutput(); err != nil {
			t.Logf("dpkg --purge: %v\n%s", err, out)
		}
	})
	run("dpkg", "-i", deb)
	if out := run("/usr/bin/fqdngate", "validate", "--config", "/etc/fqdngate/fqdngate.yaml"); !strings.Contains(out, "/etc/fqdngate/fqdngate.yaml: valid") {
		t.Errorf("the installed example does not validate:\n%s", out)
	}
	if out := run("/usr/bin/fqdngate", "version"); !strings.Contains(out, version) {
		t.Errorf("fqdngate version = %q, want %s", out, version)
	}
	u, err := user.Lookup("fqdngate")
	if err != nil {
		t.Fatalf("no fqdngate system user after install: %v", err)
	}
	st, err := os.Stat("/var/lib/fqdngate")
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("/var/lib/fqdngate: %v %v, want a 0700 directory", st, err)
	}
	if owner := run("stat", "-c", "%u", "/var/lib/fqdngate"); strings.TrimSpace(owner) != u.Uid {
		t.Errorf("/var/lib/fqdngate is owned by uid %s, want fqdngate's %s", strings.TrimSpace(owner), u.Uid)
	}
	for _, f := range []string{
		"/usr/lib/systemd/system/fqdngate.service",
		"/usr/share/man/man8/fqdngate.8.gz", "/usr/share/man/man8/fqdngate-explain.8.gz",
		"/usr/share/bash-completion/completions/fqdngate",
		"/usr/share/zsh/vendor-completions/_fqdngate",
		"/usr/share/fish/vendor_completions.d/fqdngate.fish",
		"/usr/share/doc/fqdngate/copyright",
		"/usr/share/doc/fqdngate/examples/keepalived.conf", "/usr/share/doc/fqdngate/examples/conntrackd.conf",
		"/usr/libexec/fqdngate/fqdngate-ha-notify",
	} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	unit, _ := os.ReadFile("/usr/lib/systemd/system/fqdngate.service")
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/fqdngate run") {
		t.Errorf("the unit does not run /usr/bin/fqdngate:\n%s", unit)
	}
	if out, err := exec.Command("bash", "-n", "/usr/share/bash-completion/completions/fqdngate").CombinedOutput(); err != nil {
		t.Errorf("the bash completion does not parse: %v\n%s", err, out)
	}

	run("dpkg", "--purge", "fqdngate")
	for _, f := range []string{"/usr/bin/fqdngate", "/etc/fqdngate", "/var/lib/fqdngate", "/usr/lib/systemd/system/fqdngate.service"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s is still there after purge", f)
		}
	}
	if _, err := user.Lookup("fqdngate"); err == nil {
		t.Errorf("the fqdngate user is still there after purge")
	}
}

func goarch(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
