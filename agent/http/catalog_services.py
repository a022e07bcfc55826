"""``/v1/catalog/services`` and ``/v1/catalog/service/:name`` (consul-compat 1.2.3-4), and the service JSON shapes.

Reads go through catalog.py's read path (leader rules, ``?stale``, blocking on the index of what they read: the
``services`` table, or the service's own index, agent.catalog.indexes), then answer
from the snapshot with agent.catalog.query.  Key order follows Consul's Go structs; Port is ``omitempty`` on
NodeService, ``Tags`` are ``[]`` never ``null`` (trap 21).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.catalog import indexes, query
from agent.filtering.consul_types import SERVICE_NODE
from agent.http.filtering import FilterSpec, request_filter
from agent.http.near import near_sorted
from agent.http.reads import meta_filters, read_snapshot
from agent.http.routes import Ctx, Route, path_arg
from agent.http.views import node_view_json

if TYPE_CHECKING:
    from agent.catalog.query import CheckView, Instance, NodeView
    from agent.catalog.record import ServiceRecord
    from agent.members import Snapshot

__all__ = [
    "ROUTES",
    "catalog_service",
    "catalog_services",
    "health_check_json",
    "node_service_json",
    "node_services_json",
]


def _sorted(mapping: Any) -> dict[str, str]:
    return {k: mapping[k] for k in sorted(mapping)}


def node_service_json(service: ServiceRecord, create: int, modify: int) -> dict[str, Any]:
    """A NodeService (values of ``Services`` in /v1/catalog/node, ``Service`` in /v1/health/service)."""
    out: dict[str, Any] = {}
    if service.kind:
        out["Kind"] = service.kind
    out.update({"ID": service.id, "Service": service.name, "Tags": list(service.tags), "Address": service.address,
                "Meta": _sorted(service.meta)})  # fmt: skip
    if service.port:
        out["Port"] = service.port
    out.update(
        {
            "Weights": {"Passing": service.weights_passing, "Warning": service.weights_warning},
            "EnableTagOverride": service.enable_tag_override,
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {},
            "PeerName": "",
            "CreateIndex": create,
            "ModifyIndex": modify,
        }
    )
    return out


def node_services_json(snapshot: Snapshot, view: NodeView) -> dict[str, Any]:
    """``{service id: NodeService}`` of one node (the ``consul`` service included on servers)."""
    return {s.id: node_service_json(s, c, m) for s, c, m in query.node_services(snapshot, view)}


def service_node_json(instance: Instance, dc: str) -> dict[str, Any]:
    """A ServiceNode: the flat merge of node and service (elements of /v1/catalog/service/:name)."""
    service = instance.service
    node = node_view_json(instance.node)
    return {
        "ID": node["ID"],
        "Node": node["Node"],
        "Address": node["Address"],
        "Datacenter": node["Datacenter"] or dc,
        "TaggedAddresses": node["TaggedAddresses"],
        "NodeMeta": node["Meta"],
        "ServiceKind": service.kind,
        "ServiceID": service.id,
        "ServiceName": service.name,
        "ServiceTags": list(service.tags),
        "ServiceAddress": service.address,
        "ServiceWeights": {"Passing": service.weights_passing, "Warning": service.weights_warning},
        "ServiceMeta": _sorted(service.meta),
        "ServicePort": service.port,
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": service.enable_tag_override,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "ServiceLocality": None,
        "CreateIndex": instance.create_index,
        "ModifyIndex": instance.modify_index,
    }


def health_check_json(view: CheckView) -> dict[str, Any]:
    """A HealthCheck (consul-compat 1.1); ``Definition`` is ``{}`` (all its fields are omitempty)."""
    check = view.check
    return {
        "Node": view.node,
        "CheckID": check.id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(check.service_tags),
        "Type": check.type,
        "Interval": check.interval,
        "Timeout": check.timeout,
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": view.create_index,
        "ModifyIndex": view.modify_index,
    }


async def catalog_services(ctx: Ctx) -> dict[str, list[str]]:
    """GET /v1/catalog/services: ``{name: union of tags}`` (``consul`` from the servers included)."""
    filters = meta_filters(ctx)
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.services_read(s.indexes, bool(filters)))
    dc = ctx.api.config.datacenter
    flt = request_filter(ctx)
    if flt is None:
        return query.service_tags(snapshot, dc=dc, node_meta=filters)
    # Consul filters the ServiceNodes, then groups what is left: a service none of whose instances match is absent
    tags: dict[str, set[str]] = {}
    for instance in query.all_instances(snapshot, dc=dc, node_meta=filters):
        if flt.matches(service_node_json(instance, dc)):
            tags.setdefault(instance.service.name, set()).update(instance.service.tags)
    return {name: sorted(tags[name]) for name in sorted(tags)}


async def catalog_service(ctx: Ctx) -> list[dict[str, Any]]:
    """GET /v1/catalog/service/:name[?tag=...][&node-meta=k:v]: every instance, health ignored."""
    name = path_arg(ctx, "/v1/catalog/service/", "Missing service name")
    filters = meta_filters(ctx)
    snapshot, _ = await read_snapshot(ctx, lambda s: indexes.service_read(s.indexes, name))
    dc = ctx.api.config.datacenter
    instances = query.service_instances(
        snapshot, name, dc=dc, tags=ctx.request.query.get_all("tag"), node_meta=filters
    )
    return near_sorted(ctx, [service_node_json(i, dc) for i in instances], lambda s: s["Node"])


ROUTES = (
    Route("/v1/catalog/services", ("GET",), catalog_services, FilterSpec(SERVICE_NODE, apply=None, rpc=True)),
    Route("/v1/catalog/service/", ("GET",), catalog_service, FilterSpec(SERVICE_NODE, rpc=True)),
)
