"""ChildLink: consent-aware child-protection data sharing."""

__version__ = "0.1.0"
