// Package ledger records who was told which address for which name, through
// which CNAME chain, on which ports, until when. It is what explanations
// are made from, and it enforces the caps: addresses per client and name,
// entries per client, and entries overall, fairly between clients (who is
// evicted: quota.go). Evicting a live entry yields the kernel elements
// that no other live entry still needs, for the enforcer to remove.
//
// Time is a parameter: nothing in this package reads the clock. Entries
// outlive their expiry by a retention period so that a drop can still be
// explained as "expired 40 s ago"; GC(now) removes them after that.
package ledger
