"""``python -m snapgraph`` is the ``snapgraph`` command."""

from snapgraph.cli import main

main()
