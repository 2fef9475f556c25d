"""Releases: a revision of a service's repo, exported into its own directory and built there once."""

from shipyard.releases.git import GitSource, resolve_revision
from shipyard.releases.store import ReleaseStore

__all__ = ["GitSource", "ReleaseStore", "resolve_revision"]
