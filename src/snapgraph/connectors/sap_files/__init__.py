"""SAP's file operators on local files: the Binary File Producer (``com.sap.file.write.v2``,
:mod:`.producer`), the Binary File Consumer (``com.sap.file.read.v2``, :mod:`.consumer`) and List Files
V2 (``com.sap.file.list.v2``, :mod:`.listing`); what they share is :mod:`.paths` (connections, file
references, SAP's partitioned-file layout) and :mod:`.reading` (the consumers' two read modes).

The descriptors, config checks and the connections accepted are :mod:`snapgraph.model.file_builtins`;
what is supported and what is refused is in docs/connectors.md ("SAP's file operators").
"""

from __future__ import annotations

from snapgraph.connectors.base import Setup
from snapgraph.connectors.sap_files.consumer import setup_binary_file_consumer
from snapgraph.connectors.sap_files.listing import setup_list_files
from snapgraph.connectors.sap_files.paths import LocalFiles
from snapgraph.connectors.sap_files.producer import fill_placeholders, setup_binary_file_producer
from snapgraph.model.file_builtins import BINARY_FILE_CONSUMER, BINARY_FILE_PRODUCER, LIST_FILES

#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {
    BINARY_FILE_PRODUCER.component: setup_binary_file_producer,
    BINARY_FILE_CONSUMER.component: setup_binary_file_consumer,
    LIST_FILES.component: setup_list_files,
}

__all__ = ["BEHAVIOURS", "LocalFiles", "fill_placeholders", "setup_binary_file_consumer",
           "setup_binary_file_producer", "setup_list_files"]
