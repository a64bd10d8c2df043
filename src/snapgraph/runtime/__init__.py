"""The runtime: channels, per-operator dispatchers, built-in operators and the engine."""
