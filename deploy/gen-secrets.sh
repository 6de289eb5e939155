#!/bin/sh
# Generates the secrets of a remusd pair into DIR, keeping any that exist:
#   auth_key                replication key shared by the primary and the backup
#   api_token               bearer token of the mutating control API routes
#   grafana_admin_password  Grafana's admin password (compose deployment)
# Usage: deploy/gen-secrets.sh DIR [FILE_MODE]
#   FILE_MODE defaults to 0600. The compose deployment needs 0644: compose
#   bind-mounts secret files with their host mode, and the daemon runs as uid
#   10001 in the container. DIR itself is always 0700, so other users of the
#   host still cannot read them.
# Both daemons of a pair need the same auth_key: generate it once, copy it.
set -eu
dir=${1:?usage: gen-secrets.sh DIR [FILE_MODE]}
mode=${2:-0600}
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
for name in auth_key api_token grafana_admin_password; do
  f="$dir/$name"
  if [ ! -s "$f" ]; then
    # 32 random bytes as 64 hex characters (the daemon wants at least 16).
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$f.tmp"
    mv "$f.tmp" "$f"
    echo "gen-secrets: wrote $f"
  else
    echo "gen-secrets: kept $f"
  fi
  chmod "$mode" "$f"
done
