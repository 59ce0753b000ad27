"""Subcommands: each parses its own arguments and returns an exit code."""
