"""Graph snapshots: the aligned-barrier protocol, its store, and recovery."""
