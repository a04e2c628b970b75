#!/usr/bin/env bash
# `make lab`: the main job. Bring up the local testbed (5 hosts, reused when already up),
# deploy the cluster with Ansible, write and read a few keys, then run the default
# experiment (experiments/lab-mixed.yml: about a minute of clients while the nemesis mixes
# partitions, kills, pauses and packet loss) with `raftlab run`, which heals, collects the
# node logs into runs/lab-mixed/<timestamp>/, checks the Raft invariants and the history's
# linearizability and renders report.html. Needs root (network namespaces).
#
# Re-running is safe and judged the same: the deploy is idempotent, and each run has its own
# client ids and keys, and its analysis reads only its own window of the node logs.
#
# Both styles run the same experiment. In the GEE style (hosts behind a gateway, as in a GEE
# slice) the controller cannot reach the nodes' private addresses: the inventory says
# `raft_lab_access: tunnel`, so the clients, the health checks and the leader probes go
# through SSH tunnels over each host's connection (via the gateway), leader hints are mapped
# to those tunnels, and the nemesis runs its commands over the same SSH connections.
#
# Environment: LAB_HOSTS (default 5), LAB_STYLE (plain|gee, default plain), LAB_SUBNET
# (default: the testbed's), LAB_INNER_SUBNET (gee: the hosts' private network), LAB_PREFIX
# (name prefix of the testbed's objects, default raftlab), LAB_STATE_DIR (the testbed's state
# directory, default /var/lib/raftlab-testbed), LAB_SPEC (default experiments/lab-mixed.yml),
# LAB_SEED (default: the spec's). The testbed stays up afterwards; remove it with
# `raftlab testbed down` (with `--state-dir` if LAB_STATE_DIR was set).
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
bed_args=()
[ -n "${LAB_STATE_DIR:-}" ] && bed_args+=(--state-dir "$LAB_STATE_DIR")
up_args=(--hosts "$HOSTS" --style "$STYLE" --inventory-dir "$INV")
[ -n "${LAB_SUBNET:-}" ] && up_args+=(--subnet "$LAB_SUBNET")
[ -n "${LAB_INNER_SUBNET:-}" ] && up_args+=(--inner-subnet "$LAB_INNER_SUBNET")
[ -n "${LAB_PREFIX:-}" ] && up_args+=(--prefix "$LAB_PREFIX")
if ! raftlab testbed "${bed_args[@]}" up "${up_args[@]}"; then
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

# The role turns client authentication on: clients prove they hold the cluster secret the
# role keeps next to the inventory (on the hosts: /etc/raftlab/secret).
export RAFT_CLIENT_TOKEN_FILE="$PWD/$INV/secret"
# In the GEE style only the gateway is reachable: this smoke test runs the client inside the
# slice (the experiment below reaches the nodes through SSH tunnels instead).
if [ "$STYLE" = gee ]; then
  raft_cmd() {
    ssh -F "$INV/ssh_config" h1 RAFT_CLIENT_TOKEN_FILE=/etc/raftlab/secret \
      /opt/raftlab/venv/bin/raft "$@"
  }
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

spec=${LAB_SPEC:-experiments/lab-mixed.yml}
step "experiment: raftlab run $spec -i $INV"
run_args=(run "$spec" -i "$INV")
[ -n "${LAB_SEED:-}" ] && run_args+=(--seed "$LAB_SEED")
rc=0
out=$(mktemp)
raftlab "${run_args[@]}" | tee "$out" || rc=$?
report=$(sed -n 's/^report: //p' "$out" | tail -n 1)
rm -f "$out"

step "status"
raft_cmd status --cluster "$cluster" || true

[ -n "$report" ] && echo "lab report: $report"
case "$rc" in
  0) meaning="VALID" ;;
  1) meaning="INVALID" ;;
  *) meaning="UNKNOWN, or the run could not be judged" ;;
esac
echo "experiment exit status: $rc ($meaning)"
exit "$rc"
