// Package secret reads the shared secrets fqdngate is given in files (the
// API token, a cluster's NATS token), with one set of checks on the file's
// kind, mode and content, so that every secret is held to the same rules.
package secret
