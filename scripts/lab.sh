#!/usr/bin/env bash
# `make lab`: the main job. Bring up the local testbed (5 hosts, reused when already up),
# deploy the cluster with Ansible, write and read a few keys, run an experiment (concurrent
# clients for LAB_SECONDS while the leader is killed every LAB_KILL_EVERY seconds), collect
# the node logs into runs/lab/<timestamp>/, then check the Raft invariants and the history's
# linearizability and render report.html. Needs root (network namespaces). Re-running is safe.
#
# Environment: LAB_HOSTS (default 5), LAB_STYLE (plain|gee, default plain), LAB_SUBNET
# (default: the testbed's), LAB_SECONDS (30), LAB_CLIENTS (8), LAB_KILL_EVERY (8),
# LAB_DOWN_FOR (3). The testbed stays up afterwards; remove it with `raftlab testbed down`.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${LAB_HOSTS:-5}
STYLE=${LAB_STYLE:-plain}
INV=inventories/local
export ANSIBLE_CONFIG="$PWD/ansible.cfg"

if [ "$(id -u)" != 0 ]; then
  echo "lab: the testbed needs root (network namespaces, veth, iptables): run 'sudo make lab'" >&2
  exit 2
fi

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

step "testbed: $HOSTS hosts, style $STYLE"
t=$(now)
up_args=(--hosts "$HOSTS" --style "$STYLE")
[ -n "${LAB_SUBNET:-}" ] && up_args+=(--subnet "$LAB_SUBNET")
if ! raftlab testbed up "${up_args[@]}"; then
  echo "lab: a testbed with other parameters may be up: see 'raftlab testbed status'," \
       "remove it with 'raftlab testbed down'" >&2
  exit 2
fi
echo "testbed up in $(took "$t")"

step "deploy: ansible-playbook site.yml"
t=$(now)
ansible-playbook -i "$INV" playbooks/site.yml
echo "site.yml in $(took "$t")"

# Client addresses of the nodes, from the generated inventory.
mapfile -t addrs < <(python3 - "$INV/hosts.yml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
for h in doc["all"]["children"]["raft_nodes"]["hosts"].values():
    print(f"{h['raft_node_address']}:7001")
PY
)
cluster=$(IFS=,; echo "${addrs[*]}")

# In the GEE style only the gateway is reachable: run the client inside the slice.
if [ "$STYLE" = gee ]; then
  raft_cmd() { ssh -F "$INV/ssh_config" h1 /opt/raftlab/venv/bin/raft "$@"; }
else
  raft_cmd() { raft "$@"; }
fi

step "client: write and read through the cluster ($cluster)"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
for i in 1 2 3; do
  raft_cmd client --cluster "$cluster" put "lab-$i" "value-$i-$stamp"
done
for i in 1 2 3; do
  got=$(raft_cmd client --cluster "$cluster" get "lab-$i")
  [ "$got" = "value-$i-$stamp" ] || { echo "lab: read lab-$i = '$got', wrote value-$i-$stamp" >&2; exit 1; }
  echo "lab-$i = $got"
done

run_dir="runs/lab/$stamp"
mkdir -p "$run_dir"
# The experiment: concurrent clients for LAB_SECONDS while the leader is killed (SIGKILL,
# over SSH) every LAB_KILL_EVERY seconds and restarted LAB_DOWN_FOR seconds later. The
# history and the fault log land in the run directory. In the GEE style the controller can
# reach only the gateway, so the workload step is left out there.
if [ "$STYLE" != gee ]; then
  step "experiment: ${LAB_SECONDS:-30} s of clients, leader killed every ${LAB_KILL_EVERY:-8} s"
  raftlab workload --inventory "$INV" --model kv --clients "${LAB_CLIENTS:-8}" \
    --ops 100000 --duration "${LAB_SECONDS:-30}" \
    --kill-leader-every "${LAB_KILL_EVERY:-8}" --down-for "${LAB_DOWN_FOR:-3}" \
    --out "$run_dir/history.jsonl"
fi

step "status"
raft_cmd status --cluster "$cluster"

step "collect: node logs"
cp -r "$INV/hosts.yml" "$run_dir/inventory.yml"
ansible-playbook -i "$INV" playbooks/collect.yml -e "raft_node_collect_dir=$PWD/$run_dir"
ln -sfn "lab/$stamp" runs/latest
echo "logs in $run_dir/nodes/"

if raftlab analyze --help >/dev/null 2>&1; then
  step "analyze"
  rc=0
  raftlab analyze "$run_dir" || rc=$?
  # analyze renders the report too; render it apart only when it did not.
  if [ ! -f "$run_dir/report.html" ] && raftlab report --help >/dev/null 2>&1; then
    raftlab report "$run_dir" || true
  fi
  [ -f "$run_dir/report.html" ] && echo "lab report: $run_dir/report.html"
  echo "analysis exit status: $rc (0 valid, 1 invalid, 2 unknown)"
  exit "$rc"
fi
echo "run directory: $run_dir"
