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
CONTROLLER_GEN_VERSION := $(shell awk '{for (i = 1; i < NF; i++) if ($$i == "sigs.k8s.io/controller-tools") print $$(i+1)}' hack/tools/codegen/go.mod)
CONTROLLER_GEN := bin/controller-gen-$(CONTROLLER_GEN_VERSION)
GENERATED := api/v1alpha1/zz_generated.deepcopy.go config/crd/bases/velvetrope.io_invitations.yaml config/rbac/role.yaml \
	charts/velvetrope/files/velvetrope.io_invitations.yaml charts/velvetrope/files/role.yaml

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
test: fmt-check vet verify-generated testbed node ## Run every test against real servers (FerretDB, envtest control plane), with the race detector.
	$(GO) test -race -count=1 -timeout 30m ./...

.PHONY: fuzz
fuzz: ## Fuzz the email parser and the request decoder, FUZZTIME each (default 30s).
	$(GO) test ./internal/invite -run '^$$' -fuzz FuzzParseEmail -fuzztime $(FUZZTIME)
	$(GO) test ./internal/redeemer -run '^$$' -fuzz FuzzDecodeRedeem -fuzztime $(FUZZTIME)

.PHONY: bench
bench: testbed ## Flash-crowd benchmark: one and two redeemers on the test bed, audit, exhausted code and landing page vs a trivial handler.
	$(GO) run ./hack/bench

.PHONY: bench-idle
bench-idle: testbed ## Idle cost: 10,000 codes, one idle redeemer: test bed CPU, redeemer CPU and RSS, storage operations per second.
	$(GO) run ./hack/bench -idle 10000

##@ Operator

# The chart renders the CRD and the rules from copies in its files/
# (templates/crds.yaml, templates/rbac.yaml): a CRD under the chart's crds/
# would never be upgraded by helm upgrade.
.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC from the markers in api/ and controllers/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/velvetrope.io_invitations.yaml charts/velvetrope/files/
	cp config/rbac/role.yaml charts/velvetrope/files/role.yaml

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the deepcopy code of api/.
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: verify-generated
verify-generated: ## Fail when the generated files are stale (regenerating them changes them).
	@before=$$(sha1sum $(GENERATED)); $(MAKE) -s manifests generate; after=$$(sha1sum $(GENERATED)); \
	if [ "$$before" != "$$after" ]; then echo "Generated files were stale; they are regenerated now, commit them:"; \
		diff <(echo "$$before") <(echo "$$after"); exit 1; fi

.PHONY: envtest
envtest: ## Build the envtest control plane (etcd, kube-apiserver, kubectl; ~10 min the first time, cached in bin/).
	$(GO) run ./hack/envtest

.PHONY: node
node: ## Build every Kubernetes binary in one go build: the envtest control plane and the real node (kubelet, kube-controller-manager, kube-scheduler, kube-proxy; cached in bin/).
	$(GO) run ./hack/envtest --node >/dev/null

.PHONY: run
run: ## Run the manager against the current kubeconfig (needs MONGODB_URI).
	$(GO) run ./cmd/manager --redeemer-image velvetrope:dev

.PHONY: install
install: ## Install the CRD into the cluster of the current kubeconfig.
	$$($(GO) run ./hack/envtest --kubectl) apply -k config/crd

.PHONY: uninstall
uninstall: delete-invitations ## Remove the CRD from the cluster, after every Invitation (the operator must run to revoke them).
	$$($(GO) run ./hack/envtest --kubectl) delete -k config/crd --ignore-not-found

.PHONY: deploy
deploy: ## Deploy the operator with kustomize (config/default).
	$$($(GO) run ./hack/envtest --kubectl) apply -k config/default

.PHONY: undeploy
undeploy: delete-invitations ## Remove the operator: every Invitation first (the operator revokes them), then the manager, RBAC and CRD.
	$$($(GO) run ./hack/envtest --kubectl) delete -k config/default --ignore-not-found

# Deleting the CRD together with the manager would leave every Invitation
# Terminating for ever: its finalizer (velvetrope.io/revoke) waits for an
# operator that is gone. So the Invitations go first, while the operator
# runs, and nothing else goes unless they are all gone within the timeout.
DELETE_TIMEOUT ?= 2m

.PHONY: delete-invitations
delete-invitations: ## Delete every Invitation in every namespace and wait (DELETE_TIMEOUT, 2m) until the operator has revoked their codes.
	@kubectl=$$($(GO) run ./hack/envtest --kubectl) || exit 1; \
	crd=$$($$kubectl get crd invitations.velvetrope.io -o name --ignore-not-found) || exit 1; \
	if [ -n "$$crd" ]; then \
		$$kubectl delete invitations.velvetrope.io --all --all-namespaces --wait --timeout=$(DELETE_TIMEOUT) || { \
			echo "Invitations are still Terminating: is the operator running? It revokes their codes and removes its finalizer."; \
			$$kubectl get invitations.velvetrope.io --all-namespaces; \
			echo "Nothing else was deleted. Start the operator (make deploy, make run) and run this again, or see docs/operations.md."; \
			exit 1; }; \
	fi

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	$(GO) build -o bin/ ./cmd/...

.PHONY: testbed
testbed: $(FERRETDB) ## Build the FerretDB test bed (once per pinned version).

$(FERRETDB): hack/tools/go.mod hack/tools/ferretdb/main.go
	@echo "Building FerretDB $(FERRETDB_VERSION) (first time only, about a minute)…"
	cd hack/tools && $(GO) build -o ../../$@ ./ferretdb

$(CONTROLLER_GEN): hack/tools/codegen/go.mod
	cd hack/tools/codegen && $(GO) build -o ../../../$@ sigs.k8s.io/controller-tools/cmd/controller-gen

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t velvetrope:dev .

##@ Run

.PHONY: dev
dev: testbed ## The whole platform on a real single-node Kubernetes here (needs root, containerd, runc, CNI plugins, iptables): operator via Helm, fleets as pods.
	$(GO) run ./hack/dev

.PHONY: run-local
run-local: testbed ## Just a redeemer on 127.0.0.1:8080 with the FerretDB test bed and the sample invitations (no Kubernetes).
	$(GO) run ./hack/runlocal

.PHONY: dev-reset
dev-reset: ## Wipe the local platform's data (.dev/).
	rm -rf .dev
