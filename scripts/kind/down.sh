#!/usr/bin/env bash
# Removes the kind cluster of scripts/kind/up.sh.
set -euo pipefail
cni=${1:?calico or cilium}
kind delete cluster --name "gateway-$cni"
