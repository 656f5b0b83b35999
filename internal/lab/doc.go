// Package lab builds test networks out of Linux network namespaces: hosts
// joined by veth links, with addresses from the documentation ranges only
// (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32). It is
// used by the end-to-end tests and by fqdnlab.
//
// Sockets made inside NS.Do belong to that namespace for their whole life,
// so a test can run servers and clients of several hosts in one process.
package lab
