#!/usr/bin/env bash
# Installs the benchmark's own tools and the peers it compares gusher with:
# matplotlib and python-socketio/Flask-SocketIO into the given venv, wrk and
# nginx's nchan module (libnginx-mod-nchan, which brings nginx) from apt, and
# Node's Socket.IO + Redis adapter/emitter from npm. None of this is in
# requirements.txt: gusher itself never needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

"$PY" -m pip install -q -r bench/requirements.txt

if ! command -v wrk >/dev/null; then
    if command -v apt-get >/dev/null; then
        (apt-get update -qq && apt-get install -y -qq wrk) || echo "bench/setup.sh: wrk not installed; the push-API scenario is skipped" >&2
    fi
fi

if ! "$PY" -c 'import sys; from bench.peers import nchan; sys.exit(not nchan.installed())' 2>/dev/null; then
    if command -v apt-get >/dev/null; then
        (apt-get update -qq && apt-get install -y -qq libnginx-mod-nchan) || echo "bench/setup.sh: libnginx-mod-nchan not installed; the nchan peer is skipped" >&2
    else
        echo "bench/setup.sh: no apt-get; install nginx with the nchan module for the nchan peer" >&2
    fi
fi

if command -v npm >/dev/null; then
    (cd bench/peers/node && npm install --no-audit --no-fund --loglevel=error)
else
    echo "bench/setup.sh: npm not found; the Node.js Socket.IO peer is skipped" >&2
fi
