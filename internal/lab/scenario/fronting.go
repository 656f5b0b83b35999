package scenario

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/fqdngate/fqdngate/internal/lab"
)

// explainReset asks fqdngate, through its API in the gateway namespace,
// why it reset the device's flow to addr:443, and notes its reason and
// message in f: the demo prints what fqdngate said, not what the lab
// expects it to say.
func explainReset(gw *lab.NS, device netip.Addr, f *Fronting) {
	dial := func(network, addr string) (net.Conn, error) {
		var c net.Conn
		err := gw.Do(func() error {
			var err error
			c, err = net.DialTimeout(network, addr, time.Second)
			return err
		})
		return c, err
	}
	hc := &http.Client{Transport: &http.Transport{Dial: dial}, Timeout: 3 * time.Second}
	q := url.Values{"addr": {f.Addr.String()}, "client": {device.String()}, "port": {fmt.Sprintf("tcp/%d", lab.PortHTTPS)}}
	// The drop is noted as the verdict is set; the reset the client saw
	// may come first.
	deadline := time.Now().Add(3 * time.Second)
	for {
		var ex struct{ Reason, Message string }
		resp, err := hc.Get("http://127.0.0.1:9053/api/v1/explain?" + q.Encode())
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&ex)
			resp.Body.Close()
		}
		if err == nil && ex.Reason == "sni-mismatch" || time.Now().After(deadline) {
			f.Reason, f.Message = ex.Reason, ex.Message
			if err != nil {
				f.Message = "explain: " + err.Error()
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
