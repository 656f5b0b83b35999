// Package policy decides whether a client may resolve a name, and on which
// ports it may then connect to the addresses it is told.
//
// A Policy is built once from validated configuration and is immutable
// afterwards, so it can be read from many goroutines without locks and
// swapped atomically on reload.
//
// Names are matched with a reversed-label trie (com → example → www), so a
// lookup costs one map probe per label of the query, whatever the number of
// patterns. Pattern semantics:
//
//	prod.core.sphere.azure.net     exactly that name
//	*.servicebus.windows.net       one or more labels below servicebus.windows.net
//	azgn*.servicebus.windows.net   exactly one label, starting with "azgn"
//
// Matching is case-insensitive and ignores a trailing dot. Names that are
// not plain host names (escapes, spaces, binary labels) never match, which
// is what keeps data tunnelled in labels from being forwarded.
package policy
