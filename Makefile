# fqdngate. README.md's two commands are `sudo make demo` (the CDN lab,
# side by side with a classic FQDN firewall) and `sudo make test` (what CI
# runs). Both install the system tools they need first.
GO ?= go
BIN := bin
# What the lab and the gateway run: nft, ip, sysctl/pgrep; the tests also
# dig (the EDNS compliance cases) and chromium (the console in a browser).
DEBS := nftables iproute2 procps ca-certificates
TEST_DEBS := $(DEBS) dnsutils chromium

.PHONY: build deps test-deps demo test bench fuzz lint clean

build:
	$(GO) build -o $(BIN)/fqdngate ./cmd/fqdngate
	$(GO) build -o $(BIN)/fqdnlab ./cmd/fqdnlab

# Installs the Debian packages when a tool is missing (needs root).
deps:
	@command -v nft >/dev/null && command -v ip >/dev/null && command -v sysctl >/dev/null && command -v pgrep >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS); }

test-deps: deps
	@command -v dig >/dev/null && command -v chromium >/dev/null || \
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

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
