"""The watchers: filesystem events in (as hints), debounced rescans, graph runs out."""
