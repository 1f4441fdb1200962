# Two commands matter: `make up` runs the whole system on this machine, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup up test test-cluster test-unit typecheck check proto proto-check sdk-docs sdk-docs-check sdk-release bench fuzz token nats-values lifecycle-doc residue k8s-base

help:
	@echo "make up     install what is missing, start nats-server, the SFU, the recorder, crm-sync, routing and signaling; prints the demo URLs"
	@echo "make test   run every check and test (installs what is missing first)"
	@echo "make check  lint and format (Biome), dependency rules (dependency-cruiser), unused code (knip)"
	@echo "make bench  run the benchmarks and print figures"
	@echo "make fuzz   run the long seeded fuzzer against the whole system (two signaling replicas)"
	@echo "make proto  regenerate TypeScript from proto/"
	@echo "make sdk-release  record the SDK's version as released (its bundle's bytes may not change after)"
	@echo "make sdk-docs  regenerate the SDKs' API references (docs/sdk/, docs/server-sdk/) from their source (TypeDoc)"
	@echo "make nats-values  write the NATS permissions (packages/common/src/jetstream/access.ts) into deploy/nats/values.yaml"
	@echo "make k8s-base  render k8s/base and the production components (k8s/components) from the Helm chart (deploy/helm/gateway)"
	@echo "make lifecycle-doc  write the table of docs/data-lifecycle.md from the catalog (packages/common/src/jetstream/catalog.ts)"
	@echo "make residue  scan NATS for what outlived its purpose (ARGS=--sweep removes it; docs/data-lifecycle.md)"

setup:
	@bash scripts/setup.sh

up: setup
	@bash scripts/up.sh

proto:
	@bash scripts/gen-proto.sh

nats-values:
	@node --import tsx scripts/nats-chart-values.ts

# k8s/base and the production components (k8s/components) are the chart rendered for the kustomize
# overlays; test/k8s fails while they are stale.
k8s-base:
	@node --import tsx scripts/k8s-base.ts
	@node --import tsx scripts/k8s-components.ts

lifecycle-doc:
	@node --import tsx scripts/data-lifecycle-doc.ts

# Without NATS_* set, as the residue identity of `make up` (.data).
residue:
	@if [ -z "$$NATS_NKEY_SEED_FILE" ]; then export NATS_URL=$${NATS_URL:-tls://127.0.0.1:4222} NATS_CA_FILE=.data/pki/ca.crt NATS_NKEY_SEED_FILE=.data/nats-auth/residue.nk NATS_TLS_CERT_FILE=.data/pki/residue.crt NATS_TLS_KEY_FILE=.data/pki/residue.key; fi; \
	  node --import tsx packages/common/src/residue/main.ts $(ARGS)

proto-check:
	@bash scripts/gen-proto.sh --check

# The SDKs' API references are checked in (docs/sdk/, docs/server-sdk/); `make test` fails when one is stale.
sdk-docs:
	@npm run --silent docs -w @gateway/sdk -- --logLevel Warn
	@npm run --silent docs -w @gateway/server-sdk -- --logLevel Warn

sdk-docs-check:
	@for pair in sdk:@gateway/sdk server-sdk:@gateway/server-sdk; do \
	  dir=$${pair%%:*}; workspace=$${pair#*:}; out=$$(mktemp -d); \
	  npm run --silent docs -w $$workspace -- --logLevel Warn --out "$$out" && \
	  diff -r "$$out" docs/$$dir >/dev/null; status=$$?; rm -rf "$$out"; \
	  [ $$status -eq 0 ] || { echo "docs/$$dir is stale: run \`make sdk-docs\` and commit it" >&2; exit 1; }; \
	done

# Records the SDK's version as released: a later build of it with other bytes fails make test (docs/sdk.md).
sdk-release:
	@npm run --silent build -w @gateway/sdk && node scripts/sdk-release.mjs

typecheck:
	@npx tsc -p tsconfig.json --noEmit

# Lint and format (Biome), the layering (dependency-cruiser) and unused files, exports and
# dependencies (knip); `npx biome check --write .` fixes what it can.
check:
	@npx biome check --error-on-warnings .
	@npx depcruise --config .dependency-cruiser.cjs packages services test bench scripts
	@npx knip --no-progress

test: setup proto-check sdk-docs-check typecheck check
	@mkdir -p .tmp
	@MEDIASOUP_WORKER_BIN=$$(bash scripts/mediasoup-worker.sh) npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest.json; \
	  status=$$?; node scripts/test-summary.mjs .tmp/vitest.json; exit $$status

# The cluster suite against a kind cluster of scripts/kind/up.sh (docs/cluster-tests.md): CNI=calico or cilium.
test-cluster:
	@GATEWAY_CNI=$${CNI:-calico} npx vitest run --config test/cluster/vitest.config.ts

bench: setup
	@MEDIASOUP_WORKER_BIN=$$(bash scripts/mediasoup-worker.sh) bash bench/run.sh

fuzz: setup
	@MEDIASOUP_WORKER_BIN=$$(bash scripts/mediasoup-worker.sh) bash scripts/fuzz.sh
