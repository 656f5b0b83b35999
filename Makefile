# fqdngate. README.md's two commands are `sudo make demo` (the CDN lab,
# side by side with a classic FQDN firewall) and `sudo make test` (what CI
# runs). Both install the system tools they need first.
GO ?= go
BIN := bin
# What the lab and the gateway run: nft, ip, sysctl/pgrep; the tests also
# dig (the EDNS compliance cases), chromium (the console in a browser),
# lintian (the Debian package), curl and openssl (clients of the verified flows),
# keepalived, conntrackd and conntrack (the HA lab and its failover tests).
DEBS := nftables iproute2 procps ca-certificates
TEST_DEBS := $(DEBS) dnsutils chromium lintian curl openssl keepalived conntrackd conntrack

.PHONY: build deps test-deps demo test bench fuzz lint clean deb

build:
	$(GO) build -o $(BIN)/fqdngate ./cmd/fqdngate
	$(GO) build -o $(BIN)/fqdnlab ./cmd/fqdnlab

# Installs the Debian packages when a tool is missing (needs root).
deps:
	@command -v nft >/dev/null && command -v ip >/dev/null && command -v sysctl >/dev/null && command -v pgrep >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS); }

test-deps: deps
	@command -v dig >/dev/null && command -v chromium >/dev/null && command -v lintian >/dev/null && command -v curl >/dev/null && command -v openssl >/dev/null && \
	  command -v keepalived >/dev/null && command -v conntrackd >/dev/null && command -v conntrack >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_DEBS); }

# The lab demo: about 70 s, root, no network.
demo: deps build
	$(BIN)/fqdnlab demo

# Benchmarks against dnsmasq, dnsmasq --nftset, unbound and dnsdist; writes
# bench/RESULTS.md (root, loopback in a namespace, a few minutes).
bench:
	bash bench/run.sh

# Unit, fuzz-seed and end-to-end tests (end-to-end needs root, ip and nft).
test: test-deps
	$(GO) test -race -count=1 ./...

# Run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./internal/policy -run '^$$' -fuzz '^FuzzParsePattern$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/policy -run '^$$' -fuzz '^FuzzParsePort$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/catalog -run '^$$' -fuzz '^FuzzCheckParam$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/dnsproxy -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/ledger -run '^$$' -fuzz '^FuzzStoredEntry$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/servicetags -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/servicetags -run '^$$' -fuzz '^FuzzParseASN$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/upstream -run '^$$' -fuzz '^FuzzParseSpec$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/dnsproxy -run '^$$' -fuzz '^FuzzTCPStream$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/api -run '^$$' -fuzz '^FuzzAuthorization$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/monitor -run '^$$' -fuzz '^FuzzDecodePacket$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/feeds -run '^$$' -fuzz '^FuzzParsePanos$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/feeds -run '^$$' -fuzz '^FuzzParseFortigate$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzClientHello$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzRequestHost$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzDecodeTCP$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/cluster -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)

# The Debian package (bin/fqdngate_VERSION_ARCH.deb): the binary, the
# systemd unit, the example configuration as /etc/fqdngate/fqdngate.yaml,
# man pages and completions, a fqdngate system user and /var/lib/fqdngate.
# nfpm is pinned in go.mod (go tool nfpm); nothing is downloaded but modules.
VERSION ?= 0.2.0
GOARCH ?= $(shell $(GO) env GOARCH)
DEB := $(BIN)/fqdngate_$(VERSION)_$(GOARCH).deb
DEBBUILD ?= build/deb
deb:
	rm -rf $(DEBBUILD) && mkdir -p $(DEBBUILD)/man $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(DEBBUILD)/fqdngate ./cmd/fqdngate
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) $(DEBBUILD)/fqdngate man $(DEBBUILD)/man
	gzip -9n $(DEBBUILD)/man/*.8
	$(DEBBUILD)/fqdngate completion bash >$(DEBBUILD)/fqdngate.bash
	$(DEBBUILD)/fqdngate completion zsh >$(DEBBUILD)/_fqdngate
	$(DEBBUILD)/fqdngate completion fish >$(DEBBUILD)/fqdngate.fish
	sed 's#/usr/local/bin/fqdngate#/usr/bin/fqdngate#g' packaging/fqdngate.service >$(DEBBUILD)/fqdngate.service
	gzip -9n <packaging/deb/changelog >$(DEBBUILD)/changelog.gz
	sed 's#@DEBBUILD@#$(abspath $(DEBBUILD))#' packaging/nfpm.yaml >$(DEBBUILD)/nfpm.yaml
	VERSION=$(VERSION) GOARCH=$(GOARCH) $(GO) tool nfpm package -f $(DEBBUILD)/nfpm.yaml -p deb -t $(DEB)

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) vet ./...

clean:
	rm -rf $(BIN) build
