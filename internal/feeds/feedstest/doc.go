// Package feedstest has fake firewalls for tests of the feeds' push: a
// PAN-OS XML API and a FortiGate REST API, each taking the requests and
// giving the answers the vendor documents, recording what they were told.
//
// They are http.Handlers: serve them over TLS (httptest.NewTLSServer, or
// a lab CA certificate inside a test's network namespace). Hang makes a
// firewall that accepts requests and never answers, Refuse one that
// refuses an entry, SetKey one that refuses the key, Clear one that
// rebooted and forgot what it held.
package feedstest
