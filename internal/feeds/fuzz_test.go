package feeds

import (
	"testing"
)

// The firewalls' answers are outside input: parsing never panics, and a
// result is one of the kinds the pusher handles.
func FuzzParsePanos(f *testing.F) {
	f.Add(200, []byte(`<response status="success"><result><uid-response><version>2.0</version><payload><register></register></payload></uid-response></result></response>`))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		checkResult(t, parsePanos(code, body))
	})
}

func FuzzParseFortigate(f *testing.F) {
	f.Add(200, []byte(`{"status":"success","http_status":200,"results":[]}`))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		checkResult(t, parseFortigate(code, body))
	})
}

func checkResult(t *testing.T, r pushResult) {
	if r.kind > failHTTP {
		t.Fatalf("unknown kind %d", r.kind)
	}
	if r.kind != ok && r.msg == "" {
		t.Fatalf("a failure without a message: %+v", r)
	}
	for a := range r.failed {
		if !a.IsValid() {
			t.Fatalf("invalid failed address in %+v", r)
		}
	}
}
