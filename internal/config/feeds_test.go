package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestFeedsValidation(t *testing.T) {
	tests := []struct {
		name  string
		feeds string
		want  []string // substrings of the errors, in order; none: valid
	}{
		{"valid", `feeds:
  widen: true
  tokens:
    - {name: edl, token_file: /etc/fqdngate/edl, feeds: [ip, domain], clients: [devices]}
  push:
    - {type: panos, url: "https://fw.example", key_file: /etc/fqdngate/pan.key}
    - {type: fortigate, url: "https://fgt.example:8443/", key_file: /k, name: "fqdngate-{rule}", hold: true}
`, nil},
		{"token problems", `feeds:
  tokens:
    - {name: edl, feeds: [ip, url], clients: [devices, nobody]}
    - {name: edl, token_file: /t, feeds: [], clients: []}
`, []string{
			"feeds.tokens[0].token_file: required",
			`feeds.tokens[0].feeds[1]: "url" is not one of ip, domain, checkpoint`,
			`feeds.tokens[0].clients[1]: "nobody" is not a client group`,
			`feeds.tokens[1].name: "edl" is already the name of feeds.tokens[0]`,
			"feeds.tokens[1].feeds: required",
			"feeds.tokens[1].clients: required",
		}},
		{"push problems", `feeds:
  push:
    - {type: checkpoint, url: "http://fw.example", key_file: /k}
    - {type: panos, url: "https://fw.example/api/", tag: "fq-{group}", name: x, batch_ms: 20000, batch_max: -1}
    - {type: fortigate, url: "https://fgt.example", key_file: /k, tag: t}
`, []string{
			`feeds.push[0].type: "checkpoint" is not one of panos, fortigate`,
			`feeds.push[0].url: "http://fw.example" is not https://host[:port]`,
			"feeds.push[1].key_file: required", // absent: at the entry, before its url
			`feeds.push[1].url: "https://fw.example/api/" is not https://host[:port]`,
			`feeds.push[1].tag: "fq-{group}": unknown placeholder {group}`,
			"feeds.push[1].name: only for type fortigate",
			"feeds.push[1].batch_ms: 20000 is outside 1..10000",
			"feeds.push[1].batch_max: -1 is outside 1..10000",
			"feeds.push[2].tag: only for type panos",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(minimal+tc.feeds))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				p := c.Feeds.Push
				if p[0].Tag != DefaultPushTag || p[0].BatchMS != DefaultPushBatchMS || p[1].Name != "fqdngate-{rule}" || p[1].Tag != "" {
					t.Errorf("defaults: %+v", p)
				}
				var b bytes.Buffer
				if err := c.WriteEffective(&b); err != nil {
					t.Fatal(err)
				}
				for _, s := range []string{"token edl (/etc/fqdngate/edl): feeds ip, domain of devices", "widened to *.zone",
					"push panos https://fw.example: tag fqdngate-{client}-{rule}", "answers wait for its acknowledgement, within 1s"} {
					if !strings.Contains(b.String(), s) {
						t.Errorf("effective config lacks %q:\n%s", s, b.String())
					}
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%s", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("error %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestBesideFirewallExample(t *testing.T) {
	c, err := Load("../../examples/beside-firewall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Enforcer.Backend != "none" || len(c.Feeds.Tokens) != 2 || len(c.Feeds.Push) != 2 || !c.Feeds.Push[0].Hold {
		t.Errorf("feeds %+v backend %s", c.Feeds, c.Enforcer.Backend)
	}
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"push panos https://fw.example.net: tag fqdngate-{client}-{rule}", "push fortigate https://fgt.example.net: external resource fqdngate-{client}-{rule}", "left out and reported"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("effective config lacks %q:\n%s", want, b.String())
		}
	}
}
