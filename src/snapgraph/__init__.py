"""snapgraph: run SAP Data Intelligence Gen2 Python3 operator graphs anywhere,
with graph snapshots, operator state and automatic recovery."""

__version__ = "0.1.0"
