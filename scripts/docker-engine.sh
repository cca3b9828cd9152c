#!/usr/bin/env bash
# Starts a private Docker engine for the image tests, the way docs/development.md prescribes: its
# own data and exec roots and socket, and no networking changes (no bridge, no iptables, no
# masquerade; containers run with --network host). Never start dockerd without these flags on
# these machines: it would rewrite the firewall. Prints the DOCKER_HOST to export.
#   scripts/docker-engine.sh start DIR   |   scripts/docker-engine.sh stop DIR
set -euo pipefail
action=$1
D=$2
case "$action" in
  start)
    mkdir -p "$D"
    dockerd --data-root "$D/root" --exec-root "$D/exec" -H "unix://$D/docker.sock" \
      --pidfile "$D/dockerd.pid" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
      >"$D/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do
      if DOCKER_HOST="unix://$D/docker.sock" docker version >/dev/null 2>&1; then
        echo "unix://$D/docker.sock"
        exit 0
      fi
      sleep 0.2
    done
    echo "dockerd did not start; its log:" >&2
    tail -20 "$D/dockerd.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$D/dockerd.pid" ]; then
      pid=$(cat "$D/dockerd.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    ;;
esac
