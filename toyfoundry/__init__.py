"""Toyfoundry: a build-system-style toy factory on a doit graph."""

__version__ = "0.1.0"
