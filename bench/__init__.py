"""Toyfoundry's benchmark suite: workloads and measurements against reference graphs."""
