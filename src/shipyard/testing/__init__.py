"""Public fakes for unit tests (DESIGN: real parts in integration tests, fakes only here)."""

from shipyard.testing.fakes import FakeRouter, FakeTarget

__all__ = ["FakeRouter", "FakeTarget"]
