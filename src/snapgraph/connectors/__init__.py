"""Ready sources and sinks (SQL, files, NATS JetStream) and SAP's built-in data operators mapped onto
them: operator behaviours written against the same ``api`` object as user scripts, with state and
snapshot support. Their descriptors (component ids, ports, delivery traits) are in
:mod:`snapgraph.model.builtins`; the runtime finds a behaviour by component id."""
