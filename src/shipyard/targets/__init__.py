"""Targets: where instances run."""
