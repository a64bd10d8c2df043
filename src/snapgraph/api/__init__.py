"""The Gen2 Python3 operator API (``com.sap.system.python3Operator.v2``) as scripts see it.

Knows the graph model's types, nothing of the runtime or the CLI.
"""
