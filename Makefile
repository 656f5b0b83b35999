# fqdngate: the two set-up commands of README.md are `sudo make demo`-style
# targets below; `make test` is what CI runs.
GO ?= go
BIN := bin

.PHONY: build test fuzz lint clean

build:
	$(GO) build -o $(BIN)/fqdngate ./cmd/fqdngate

# Unit, fuzz-seed and end-to-end tests (end-to-end needs root, ip and nft).
test:
	$(GO) test -race -count=1 ./...

# Run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./internal/policy -run '^$$' -fuzz '^FuzzParsePattern$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/policy -run '^$$' -fuzz '^FuzzParsePort$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/dnsproxy -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $(FUZZTIME)

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
