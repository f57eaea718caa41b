"""Sans-I/O transcript model: events to blocks, incremental markdown and highlighting."""
