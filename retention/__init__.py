"""Retention Studio: segments, retention curves and retention policies from user data."""

__version__ = "0.1.0"
