"""Sans-I/O project context: ignore rules, snapshots, diffs, coalescing and the ledger."""
