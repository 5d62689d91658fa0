"""Test support shared by tests/ and bench/: the loopback sshd, the latency proxy, fixture
workspaces, the CLI runner and the bad-input table."""
