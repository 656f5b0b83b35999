package packaging

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// labVars fills in every placeholder of the HA files, as the lab does.
func labVars(name string) map[string]string {
	switch name {
	case Keepalived:
		return map[string]string{"NODE": "gw1", "PRIORITY": "150", "LAN_IF": "lan0", "LAN_VIP": "192.0.2.1/25",
			"WAN_IF": "wan0", "WAN_VIP": "198.51.100.1/24", "API": "http://127.0.0.1:9053",
			"NOTIFY": "/run/lab/fqdngate-ha-notify", "CONNTRACKD_CONF": "/run/lab/conntrackd.conf"}
	case Conntrackd:
		return map[string]string{"SYNC_IF": "sync0", "SYNC_ADDR": "192.0.2.249", "PEER_SYNC_ADDR": "192.0.2.250",
			"RUN_DIR": "/run/lab", "LAN_VIP": "192.0.2.1", "WAN_VIP": "198.51.100.1", "LAN_ADDR": "192.0.2.2", "WAN_ADDR": "198.51.100.2"}
	}
	return map[string]string{}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		vars    func() map[string]string
		wantErr string
		want    []string
	}{
		{name: "keepalived filled", file: Keepalived, vars: func() map[string]string { return labVars(Keepalived) },
			want: []string{"interface lan0", "192.0.2.1/25 dev lan0", `"/run/lab/fqdngate-ha-notify primary /run/lab/conntrackd.conf"`, "http://127.0.0.1:9053/readyz", "priority 150"}},
		{name: "conntrackd filled", file: Conntrackd, vars: func() map[string]string { return labVars(Conntrackd) },
			want: []string{"IPv4_Destination_Address 192.0.2.250", "Path /run/lab/conntrackd.ctl", "Interface sync0"}},
		{name: "notify has no placeholders", file: Notify, vars: func() map[string]string { return labVars(Notify) },
			want: []string{"conntrackd"}},
		{name: "missing value", file: Keepalived, wantErr: "@LAN_IF@", vars: func() map[string]string {
			v := labVars(Keepalived)
			delete(v, "LAN_IF")
			return v
		}},
		{name: "unknown key", file: Conntrackd, wantErr: "@SYNC_IFACE@ is not in the file", vars: func() map[string]string {
			v := labVars(Conntrackd)
			v["SYNC_IFACE"] = "x"
			return v
		}},
		{name: "unknown file", file: "nope.conf", wantErr: "nope.conf", vars: func() map[string]string { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.file, tc.vars())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(got), w) {
					t.Errorf("rendered %s lacks %q", tc.file, w)
				}
			}
			if left := placeholder.FindAllString(stripComments(string(got)), -1); len(left) > 0 {
				t.Errorf("placeholders left: %v", left)
			}
		})
	}
}

// TestPlaceholdersDocumented: every placeholder a file uses is explained
// in its header, where a user copying it looks.
func TestPlaceholdersDocumented(t *testing.T) {
	for _, name := range []string{Keepalived, Conntrackd} {
		keys, err := Placeholders(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := File(name)
		var header []string
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "#") {
				break
			}
			header = append(header, line)
		}
		h := strings.Join(header, "\n")
		for _, k := range keys {
			if !strings.Contains(h, "@"+k+"@") {
				t.Errorf("%s: @%s@ is not explained in the header", name, k)
			}
		}
		if want := slices.Sorted(func(yield func(string) bool) {
			for k := range labVars(name) {
				if !yield(k) {
					return
				}
			}
		}); !slices.Equal(keys, want) {
			t.Errorf("%s placeholders %v, the lab fills %v", name, keys, want)
		}
	}
}

// TestNotifyScriptParses: the notify script is valid POSIX sh.
func TestNotifyScriptParses(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh to check the notify script with: %v", err)
	}
	cmd := exec.Command(sh, "-n", "/dev/stdin")
	b, _ := File(Notify)
	cmd.Stdin = strings.NewReader(string(b))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
}

func stripComments(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
