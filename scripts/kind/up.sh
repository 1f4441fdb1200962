#!/usr/bin/env bash
# A kind cluster for the cluster suite (docs/cluster-tests.md), with Calico or Cilium, and
# Gateway installed by its Helm chart with that CNI's value set:
#
#   scripts/kind/up.sh calico     # or cilium; then: make test-cluster CNI=calico
#   scripts/kind/down.sh calico
#
# Needs docker, kind (0.27 or newer), kubectl, helm and network access to the projects' release
# downloads; builds the images from this checkout and loads them into the nodes (no registry).
set -euo pipefail

cni=${1:?calico or cilium}
case "$cni" in calico | cilium) ;; *) echo "usage: $0 calico|cilium" >&2; exit 2 ;; esac
name="gateway-$cni"
context="kind-$name"
cd "$(dirname "$0")/../.."

# Versions, pinned: a rerun builds the same cluster.
CALICO_VERSION=v3.29.3
CILIUM_VERSION=1.17.2
CERT_MANAGER_VERSION=v1.17.1
KEDA_VERSION=2.17.0
PROMETHEUS_OPERATOR_VERSION=v0.81.0
GATEWAY_API_VERSION=v1.2.1
NATS_CHART_VERSION=1.2.10
VERSION=$(node -p 'require("./package.json").version')

say() { printf '\n== %s\n' "$*" >&2; }
k() { kubectl --context "$context" "$@"; }

say "cluster $name"
proxy_mode=iptables
[ "$cni" = cilium ] && proxy_mode=none
sed "s/KUBE_PROXY_MODE/$proxy_mode/" scripts/kind/cluster.yaml | kind create cluster --name "$name" --config - --wait 0s

# The Gateway API's CRDs before the CNI: Cilium serves the Gateway API when they are there, and
# the chart renders HTTPRoutes for the Cilium value set.
k apply --server-side -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"

say "CNI: $cni"
if [ "$cni" = calico ]; then
  k create -f "https://raw.githubusercontent.com/projectcalico/calico/$CALICO_VERSION/manifests/tigera-operator.yaml"
  k wait --for=condition=Established crd/installations.operator.tigera.io --timeout=120s
  # kind's pod subnet (10.244.0.0/16), VXLAN between the nodes.
  k create -f - <<'EOF'
apiVersion: operator.tigera.io/v1
kind: Installation
metadata:
  name: default
spec:
  calicoNetwork:
    ipPools:
      - cidr: 10.244.0.0/16
        encapsulation: VXLAN
        natOutgoing: Enabled
---
apiVersion: operator.tigera.io/v1
kind: APIServer
metadata:
  name: default
spec: {}
EOF
else
  helm repo add cilium https://helm.cilium.io >/dev/null
  helm --kube-context "$context" install cilium cilium/cilium --version "$CILIUM_VERSION" -n kube-system \
    --set kubeProxyReplacement=true --set "k8sServiceHost=$name-control-plane" --set k8sServicePort=6443 \
    --set ipam.mode=kubernetes --set gatewayAPI.enabled=true --set operator.replicas=1
fi
k wait --for=condition=Ready nodes --all --timeout=600s

say "cert-manager, KEDA, the prometheus-operator's CRDs"
k apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
helm repo add kedacore https://kedacore.github.io/charts >/dev/null
helm --kube-context "$context" install keda kedacore/keda --version "$KEDA_VERSION" -n keda --create-namespace
k apply --server-side -f "https://github.com/prometheus-operator/prometheus-operator/releases/download/$PROMETHEUS_OPERATOR_VERSION/stripped-down-crds.yaml"
k -n cert-manager wait --for=condition=Available deployment --all --timeout=300s

say "images $VERSION, built here and loaded into the nodes"
for target in sfu signaling recorder crm-sync routing; do
  docker build -q -f deploy/Dockerfile --target "$target" -t "registry.example.com/gateway/$target:$VERSION" .
  kind load docker-image --name "$name" "registry.example.com/gateway/$target:$VERSION"
done
coturn_version=$(sed -n 's/^ARG COTURN_VERSION=//p' deploy/coturn/Dockerfile)
docker build -q -f deploy/coturn/Dockerfile -t "registry.example.com/gateway/coturn:$coturn_version" .
kind load docker-image --name "$name" "registry.example.com/gateway/coturn:$coturn_version"

say "Gateway (chart, kind-$cni values) and NATS (three servers in three zones)"
# The SFU announces its node's address: kind's nodes are reachable from this machine, where the
# suite's browser runs. NATS keeps three copies of everything, as in production.
helm --kube-context "$context" upgrade --install gateway deploy/helm/gateway -n gateway --create-namespace \
  -f "deploy/helm/gateway/ci/kind-$cni-values.yaml" \
  --set images.tag="$VERSION" --set sfu.announcedAddress.source=host --set nats.replicas=3
helm repo add nats https://nats-io.github.io/k8s/helm/charts/ >/dev/null
helm --kube-context "$context" upgrade --install nats nats/nats --version "$NATS_CHART_VERSION" -n gateway -f deploy/nats/values.yaml
k -n gateway rollout status statefulset/nats --timeout=600s
k -n gateway wait --for=condition=Complete job/nats-provision --timeout=600s
for namespace in gateway gateway-media; do k -n "$namespace" wait --for=condition=Available deployment --all --timeout=600s; done
say "ready: make test-cluster CNI=$cni"
