# VelvetRope. `make help` lists the targets.
SHELL := /usr/bin/env bash
GO ?= go

# The FerretDB test bed is built from the version pinned in hack/tools/go.mod
# and cached under bin/ by that version.
FERRETDB_VERSION := $(shell awk '{for (i = 1; i < NF; i++) if ($$i == "github.com/FerretDB/FerretDB") print $$(i+1)}' hack/tools/go.mod)
ifeq ($(FERRETDB_VERSION),)
$(error FerretDB is not pinned in hack/tools/go.mod)
endif
FERRETDB := bin/ferretdb-$(FERRETDB_VERSION)
FUZZTIME ?= 30s

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Format all Go code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: fmt-check
fmt-check: ## Fail when a Go file is not gofmt-formatted.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet on both modules.
	$(GO) vet ./...
	cd hack/tools && $(GO) vet ./...

.PHONY: test
test: fmt-check vet testbed ## Run every test against real servers (FerretDB test bed), with the race detector.
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: fuzz
fuzz: ## Fuzz the email parser and the request decoder, FUZZTIME each (default 30s).
	$(GO) test ./internal/invite -run '^$$' -fuzz FuzzParseEmail -fuzztime $(FUZZTIME)
	$(GO) test ./internal/redeemer -run '^$$' -fuzz FuzzDecodeRedeem -fuzztime $(FUZZTIME)

.PHONY: bench
bench: testbed ## Flash-crowd benchmark: two redeemers on the test bed, audit, exhausted code vs a trivial handler.
	$(GO) run ./hack/bench

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	$(GO) build -o bin/ ./cmd/...

.PHONY: testbed
testbed: $(FERRETDB) ## Build the FerretDB test bed (once per pinned version).

$(FERRETDB): hack/tools/go.mod hack/tools/ferretdb/main.go
	@echo "Building FerretDB $(FERRETDB_VERSION) (first time only, about a minute)…"
	cd hack/tools && $(GO) build -o ../../$@ ./ferretdb

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t velvetrope:dev .

##@ Run

.PHONY: run-local
run-local: testbed ## Run a redeemer on 127.0.0.1:8080 with the FerretDB test bed and the sample invitations.
	$(GO) run ./hack/runlocal

.PHONY: dev-reset
dev-reset: ## Wipe the local platform's data (.dev/).
	rm -rf .dev
