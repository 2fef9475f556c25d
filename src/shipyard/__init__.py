"""shipyard: self-hosted continuous delivery for teams with many service repos."""

__version__ = "0.1.0"
