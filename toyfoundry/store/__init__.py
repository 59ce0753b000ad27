"""Durable state on disk: every path, atomic writes, ledgers, safe reads and the lock."""
