// Package verify checks the name inside a flow against what DNS told the
// client (DESIGN section 11). The first client payload of a new flow on
// a verified port comes from the kernel through NFQUEUE; the TLS
// ClientHello's server_name, or the HTTP request's Host, must be a name
// the ledger holds live for this client and this address. The verdict is
// remembered in the flow's conntrack mark, so the rest of the flow never
// leaves the kernel.
package verify
