"""raftlab's lab: testbed hosts, Ansible orchestration, workload, nemesis, collection,
analysis and reports. Runs on the controller; imports :mod:`raft`, never the other way."""
