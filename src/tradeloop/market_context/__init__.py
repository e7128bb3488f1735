"""Market context: what bars and GEX say about a symbol at a signal's time, cached and kept
with each decision."""
