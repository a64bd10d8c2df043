"""Watching runs: the live view of a running graph (:mod:`snapgraph.monitor.live`) and what shows it.

Everything here is built on the instrument hooks and counters of :mod:`snapgraph.instruments` and reads
the snapshot store for past runs; the engine does not know this package exists.
"""
