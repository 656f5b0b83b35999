// Package config loads fqdngate's YAML configuration, fills defaults and
// validates it. Every error names the file, the line, the column and the
// field path (e.g. "gw.yaml:14:9: clients[0].rules[1].ports[0]: ..."), and
// all errors of a file are reported at once, in file order, so that one run
// of `fqdngate validate` shows everything to fix (decode.go, syntax.go).
// Settings that are valid but dangerous are warnings (warnings.go), errors
// with WithStrict.
//
// The schema is the public contract of DESIGN.md section 7; docs/config.md
// documents each field.
package config
