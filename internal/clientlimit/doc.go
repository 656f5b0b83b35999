// Package clientlimit decides, per client, whether a query is admitted:
// a token bucket of the client's group's max_qps and a count of the
// client's queries in flight against its max_inflight. It does one job,
// admission, before any work is spent on the query.
//
// Every structure is bounded. At most MaxClients clients are tracked, in
// shards; an idle one (nothing in flight, nothing asked for IdleAfter) is
// forgotten, which loses nothing: its bucket would be full again. When a
// shard is full of active clients, a new client shares its group's
// overflow bucket, whose limits are those of one client: a network of
// rotating source addresses then costs no more memory and gets no more
// than one client's share, while the clients already tracked keep theirs.
//
// Time is a parameter (Admit takes now), so that tests step a clock.
package clientlimit
