"""``hdbcli``, SAP HANA's Python client, as snapgraph's stand-in (:mod:`snapgraph.connectors.hdbcli_compat`).

Scripts import it as ``from hdbcli import dbapi`` inside a snapgraph run when SAP's own ``hdbcli`` is not
installed; an installed one always wins.
"""
