// Package labtest holds the test-side helpers of the lab: the check that a
// test may run, and namespaces that are removed when the test ends.
package labtest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// Require stops a test that cannot run here: it fails under CI=true (CI
// installs everything, so a missing tool is a broken CI) and skips on a
// developer machine without root or the tools.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if !lab.IsRoot() {
		missing = append(missing, "root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("end-to-end test needs %v; CI must provide them", missing)
	}
	t.Skipf("needs %v (runs as root in CI)", missing)
}

// NS makes a namespace that is deleted when the test ends, pass or fail.
func NS(t testing.TB, role string) *lab.NS {
	t.Helper()
	ns, err := lab.NewNS(role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns
}
