"""Pure command builders: the argv lists and protocol lines shipyard sends to other programs (no I/O)."""
