"""Toyfoundry's doit graph: `doit` builds every stale artefact; `doit list` shows the tasks."""

from toyfoundry.graph.dodo import *  # noqa: F403  (the task creators and DOIT_CONFIG)
