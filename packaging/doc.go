// Package packaging holds the files a user copies onto a pair of fqdngate
// gateways for high availability (keepalived.conf, conntrackd.conf and the
// notify script fqdngate-ha-notify), embedded so that the HA lab and the
// end-to-end tests run exactly these files, filled in by Render.
package packaging
