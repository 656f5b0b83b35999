package report

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample() Report {
	return Report{HelloBytes: 1512, Clients: 32, Duration: 5 * time.Second, Sequential: 2000, Modes: []Mode{
		{Verify: "off", Rate: 36000, P50: 15 * time.Microsecond, P99: 60 * time.Microsecond},
		{Verify: "enforce", Rate: 21000, UserUS: 15, SysUS: 25, P50: 150 * time.Microsecond, P99: 250 * time.Microsecond, CPUSteal: 1},
	}}
}

func TestTargets(t *testing.T) {
	for _, c := range []struct {
		name     string
		edit     func(*Report)
		met      [2]bool
		doubtful bool
	}{
		{"per core met, latency not", func(*Report) {}, [2]bool{true, false}, false},
		{"per core not met", func(r *Report) { r.Modes[1].SysUS = 40 }, [2]bool{false, false}, false},
		{"latency at the bound is met", func(r *Report) { r.Modes[1].P99 = 160 * time.Microsecond }, [2]bool{true, true}, false},
		{"steal puts both in doubt", func(r *Report) { r.Modes[1].CPUSteal = 12 }, [2]bool{true, false}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := sample()
			c.edit(&r)
			got := r.Targets()
			for i, tg := range got {
				if tg.Met != c.met[i] || (tg.Doubt != "") != c.doubtful {
					t.Errorf("%s: %s met %v doubt %q; want met %v, doubt %v", tg.What, tg.Value, tg.Met, tg.Doubt, c.met[i], c.doubtful)
				}
			}
		})
	}
}

func TestReadWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "verify.json")
	if err := sample().Write(path); err != nil {
		t.Fatal(err)
	}
	r, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.AddedP99() != 190*time.Microsecond || r.Enforce().PerCore() != 25000 {
		t.Errorf("read back: added p99 %v, per core %v", r.AddedP99(), r.Enforce().PerCore())
	}
	bad := sample()
	bad.Modes = bad.Modes[1:]
	if err := bad.Write(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil {
		t.Error("a report without verify off read without error")
	}
	var b bytes.Buffer
	sample().WriteTable(&b)
	for _, want := range []string{"| off | 36000 | 0 | 0.0 + 0.0 µs | - |", "| enforce | 21000 | 0 | 15.0 + 25.0 µs | 25000 |", "0.58× the flow rate; enforcing added 135 µs at p50 and 190 µs at p99"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table without %q:\n%s", want, b.String())
		}
	}
}
