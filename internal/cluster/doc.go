// Package cluster replicates what one fqdngate node told its clients to
// the other nodes of a site, over NATS JetStream, so that after a failover
// the devices' cached answers still connect through the node that took
// over.
//
// Every node writes only its own stream (FQDNGATE_<site>_<node>, subjects
// fqdngate.<site>.<node>.answers.>), one message per ledger entry (client,
// name, address), and reads the streams of the others with ordered
// consumers. No write needs a majority: a two-node JetStream cluster that
// has lost a node cannot write to a replicated stream, so fqdngate does not
// use one. With `nats: embedded` each node runs its own JetStream server
// and its peers connect to it as clients; with a list of URLs every node
// of every site shares one existing NATS system, each site on its own
// subject tree.
//
// What arrives is outside input: a record is decoded strictly, its node
// must be the stream's, its expiry must lie within what a node could have
// granted, and the receiving node judges it against its own policy before
// a kernel element follows (the Applier).
package cluster
