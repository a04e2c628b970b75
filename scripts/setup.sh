#!/usr/bin/env bash
# Install what raftlab needs on this machine: the Debian packages the lab drives (when run as
# root on Debian/Ubuntu) and the Python package with its extras, editable, into the current
# Python. Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Debian packages and the command each provides (the lab checks for the commands).
debs=(openssh-server:sshd openssh-client:ssh iptables:iptables faketime:faketime
      iproute2:ip procps:pkill sudo:sudo chromium:chromium util-linux:unshare e2fsprogs:mkfs.ext4)
missing=()
for pair in "${debs[@]}"; do
  pkg=${pair%%:*} cmd=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: warning: missing Debian packages ${missing[*]} (install them as root);" \
         "lab commands will refuse to start without them" >&2
  fi
fi

if ! "$PYTHON" -c 'import raft, deploy, msgpack, paramiko, pytest, hypothesis, mypy, ruff' 2>/dev/null \
   || [ pyproject.toml -nt .setup-stamp ]; then
  echo "setup: installing raftlab and its Python dependencies"
  "$PYTHON" -m pip install -q --disable-pip-version-check -e '.[lab,dev,fast]'
  touch .setup-stamp
fi
