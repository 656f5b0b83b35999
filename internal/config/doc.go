// Package config loads fqdngate's YAML configuration, fills defaults and
// validates it. Every error names the file, the line and the field path
// (e.g. "gw.yaml:14:9: clients[0].rules[1].ports[0]: ..."), and all errors
// of a file are reported at once so that one run of `fqdngate validate`
// shows everything to fix.
//
// The schema is the public contract of DESIGN.md section 7; docs/config.md
// documents each field.
package config
