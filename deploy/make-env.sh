#!/usr/bin/env bash
# Writes deploy/.env for docker-compose: a random bootstrap admin key and
# cluster secret. Never overwrites an existing file (the keys in it are in use).
set -euo pipefail
env_file="$(dirname "$0")/.env"
if [ -e "$env_file" ]; then
  echo "$env_file exists; leaving it as it is" >&2
  exit 0
fi
umask 077
random() { head -c 32 /dev/urandom | base64 | tr -d '\n=+/' ; }
{
  echo "CAXTON_ADMIN_KEY=$(random)"
  echo "CAXTON_CLUSTER_SECRET=$(random)"
} > "$env_file"
echo "wrote $env_file (mode 600): CAXTON_ADMIN_KEY is the bootstrap admin key"
