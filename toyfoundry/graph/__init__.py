"""The doit graph: task creators, the dependency DB backend, the file checker and the reporter."""
