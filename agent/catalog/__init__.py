"""The replicated service catalog: records (record.py), their exchange (replication.py, sans-IO), the trio runner
(runner.py), and the read side over snapshots (query.py: what HTTP and DNS ask)."""

from agent.catalog.query import CheckView, Instance, service_instances
from agent.catalog.record import CheckRecord, NodeCatalog, ServiceRecord

__all__ = ["CheckRecord", "CheckView", "Instance", "NodeCatalog", "ServiceRecord",
           "service_instances"]
