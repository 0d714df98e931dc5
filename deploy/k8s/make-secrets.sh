#!/usr/bin/env bash
# Creates the Secrets the StatefulSet (deploy/k8s/base/statefulset.yaml)
# mounts, in the current (or NAMESPACE) namespace: the namespace the overlay
# applies to (`namespace:` in deploy/k8s/overlays/*/kustomization.yaml).
#   caxton     admin-key (the bootstrap admin key), cluster-secret (the gossip key)
#   caxton-ca  ca.crt, ca.key: the cluster CA the pods' init step issues
#              node certificates from
# The CA is made with `caxton cluster ca init` (CAXTON_BIN, else PATH) in a
# temporary directory that is removed afterwards; keep a copy only if you
# will issue certificates outside the cluster.
set -euo pipefail
ns=(); [ -n "${NAMESPACE:-}" ] && ns=(-n "$NAMESPACE")
caxton=${CAXTON_BIN:-caxton}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
random() { head -c 32 /dev/urandom | base64 | tr -d '\n=+/'; }
"$caxton" cluster ca init "$work/ca" --name "${CLUSTER_NAME:-caxton}" >/dev/null
kubectl "${ns[@]}" create secret generic caxton \
    --from-literal=admin-key="$(random)" --from-literal=cluster-secret="$(random)"
kubectl "${ns[@]}" create secret generic caxton-ca \
    --from-file=ca.crt="$work/ca/ca.crt" --from-file=ca.key="$work/ca/ca.key"
echo "created Secrets caxton and caxton-ca; the admin key: kubectl get secret caxton -o jsonpath='{.data.admin-key}' | base64 -d"
