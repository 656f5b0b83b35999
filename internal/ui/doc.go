// Package ui is the operator console (DESIGN section 15): plain HTML, CSS
// and JavaScript embedded in the binary and served at /ui/ on the API
// listener. It has no build step and loads nothing from another origin;
// the page reads the JSON API by polling.
//
// Everything the page shows from the API (names, CNAME chains, rule
// sources) is attacker-controlled text: app.js builds the DOM with
// createElement and textContent only, never innerHTML, and the API's
// Content-Security-Policy forbids inline script and style besides.
package ui
