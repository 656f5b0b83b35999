// Package servicetags reads Microsoft's Azure Service Tags JSON (the weekly
// ServiceTags_Public_*.json download and the discovery API's answer) and
// indexes its prefixes, so that the tags containing an address are found by
// a longest-prefix match in a trie rather than a scan of every prefix.
//
// The coverage report (coverage.go) uses the index to answer, from the
// addresses devices were really given, whether a tag-based rule could carry
// an endpoint and at what breadth; the ASN table (asn.go) does the same for
// the origin AS of each address.
package servicetags
