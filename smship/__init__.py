"""smship: deploy smpy web apps to your own hosts over SSH."""

__version__ = "0.1.0"
