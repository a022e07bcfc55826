"""The reads a server answers for any agent, by name: each a `state.reads` read whose value is Consul's JSON.

A client agent cannot send a function over the server port, so every read an endpoint makes has a name here
and plain arguments.  `run` checks the arguments and returns a `reads.Read` (index, JSON value, interests), so
blocking (`state.wait.wait_past`) works the same for a local caller and a forwarded one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.acl.builtin import ANONYMOUS_TOKEN_ID
from agent.catalog.registered import RegisteredNode, registered_to_wire
from agent.snapshot_memo import SnapshotMemo

from .state import reads
from .state.acl_resolve import token_rules
from .state.acl_views import policy_json, policy_stub_json, role_json, token_json
from .state.commands import CommandError, Txn, decode
from .state.reads import Read
from .state.tables import State, Tx
from .state.txn import run_txn
from .state.views import catalog_node_json, kv_entry_json, session_json, txn_json

__all__ = ["QUERIES", "QueryError", "reader", "run"]


class QueryError(ValueError):
    """An unknown query or arguments it cannot take."""


def _str(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name, "")
    if not isinstance(value, str):
        raise QueryError(f"query argument {name!r}: expected a string")
    return value


def _map(read: Read[Any], value: Any) -> Read[Any]:
    return Read(read.index, value, read.interests)


def _kv_get(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """One key: ``[entry]``, or None when absent (the endpoint's 404)."""
    read = reads.kv_get(state, _str(args, "key"))
    return _map(read, None if read.value is None else [kv_entry_json(read.value)])


def _kv_list(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """``?recurse``: the entries under the prefix, or None when there are none (404)."""
    read = reads.kv_list(state, _str(args, "prefix"))
    return _map(read, [kv_entry_json(e) for e in read.value] or None)


def _kv_keys(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """``?keys``: the key names (rolled up at ``separator``), or None when there are none (404)."""
    read = reads.kv_keys(state, _str(args, "prefix"), _str(args, "separator"))
    return _map(read, list(read.value) or None)


def _session_info(state: State, args: Mapping[str, Any]) -> Read[Any]:
    read = reads.session_get(state, _str(args, "id"))
    return _map(read, [] if read.value is None else [session_json(read.value)])


def _session_list(state: State, args: Mapping[str, Any]) -> Read[Any]:
    read = reads.session_list(state)
    return _map(read, [session_json(s) for s in read.value])


def _session_node(state: State, args: Mapping[str, Any]) -> Read[Any]:
    read = reads.node_sessions(state, _str(args, "node"))
    return _map(read, [session_json(s) for s in read.value])


def _txn_read(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """A transaction of reads only (get, get-tree, checks): run on a working copy that is never committed,
    as Consul serves read-only transactions without the log.  ``data`` is an encoded `commands.Txn`."""
    data = args.get("data")
    if not isinstance(data, bytes):
        raise QueryError("query argument 'data': expected bytes")
    try:
        command = decode(data)
    except CommandError as err:
        raise QueryError(str(err)) from None
    if not isinstance(command, Txn):
        raise QueryError("txn.read: expected a txn command")
    outcome = run_txn(Tx(state, state.applied, command.now), command.ops)
    return Read(max(state.applied, 1), txn_json(outcome), ())


def _catalog_nodes(state: State, args: Mapping[str, Any]) -> Read[Any]:
    read = reads.catalog_nodes(state)
    return _map(read, [catalog_node_json(n) for n in read.value])


#: The last ``catalog.registered`` answer and the tables it was read from: every agent's mirror asks after each
#: change, so the answer is built once per change of the tables (a KV write leaves them, and it, as they were).
_REGISTERED = SnapshotMemo(max_sources=1, max_keys=1)


def _catalog_registered(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """Every registered node with its services and checks, in `agent.catalog.registered`'s wire form: what each
    agent's mirror (`agent.server.mirror`) publishes into its member table for HTTP and DNS."""
    tables = (state.nodes, state.services, state.checks)
    index = state.table_index("nodes", "services", "checks")
    answer: Read[Any] = _REGISTERED.get(tables, index, lambda: _registered_answer(state))
    return answer


def _registered_answer(state: State) -> Read[Any]:
    read = reads.registered(state)
    nodes = [
        RegisteredNode(n.node, n.address, n.id, n.datacenter, n.tagged_addresses, n.meta, n.create_index,
                       n.modify_index, tuple((s.service, s.create_index, s.modify_index) for s in services),
                       tuple((c.check, c.create_index, c.modify_index) for c in checks))
        for n, services, checks in read.value
    ]  # fmt: skip
    return _map(read, registered_to_wire(nodes))


def _token(state: State, read: Read[Any]) -> Read[Any]:
    """One token's JSON (None when absent: the endpoint's 403 ``ACL not found`` or 404)."""
    return _map(read, None if read.value is None else token_json(state, read.value))


def _acl_token(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """``/v1/acl/token/:accessor``; the endpoint redacts the SecretID for a reader without acl:write."""
    return _token(state, reads.acl_token_by_accessor(state, _str(args, "accessor_id")))


def _acl_token_self(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """``/v1/acl/token/self``: the token whose secret is the request's."""
    return _token(state, reads.acl_token_by_secret(state, _str(args, "secret_id")))


def _acl_tokens(state: State, args: Mapping[str, Any]) -> Read[Any]:
    read = reads.acl_tokens(state, _str(args, "policy"), _str(args, "role"))
    return _map(read, [token_json(state, t) for t in read.value])


def _acl_policy(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """``/v1/acl/policy/:id``, or ``/policy/name/:name`` when ``name`` is given; None when absent."""
    name = _str(args, "name")
    read = reads.acl_policy_by_name(state, name) if name else reads.acl_policy(state, _str(args, "id"))
    return _map(read, None if read.value is None else policy_json(read.value))


def _acl_policies(state: State, args: Mapping[str, Any]) -> Read[Any]:
    read = reads.acl_policies(state)
    return _map(read, [policy_stub_json(p) for p in read.value])


def _acl_role(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """``/v1/acl/role/:id``, or ``/role/name/:name`` when ``name`` is given; None when absent."""
    name = _str(args, "name")
    read = reads.acl_role_by_name(state, name) if name else reads.acl_role(state, _str(args, "id"))
    return _map(read, None if read.value is None else role_json(state, read.value))


def _acl_roles(state: State, args: Mapping[str, Any]) -> Read[Any]:
    read = reads.acl_roles(state, _str(args, "policy"))
    return _map(read, [role_json(state, r) for r in read.value])


def _acl_identity(state: State, args: Mapping[str, Any]) -> Read[Any]:
    """What any agent needs to build a token's authorizer itself: the token's JSON and the rules of every
    policy that applies in ``datacenter`` (its own, its roles', its identities' synthetic ones); None for an
    unknown or expired secret ("" is the anonymous token; ``Token`` None when none is stored yet).  Index: the
    highest of the three ACL tables, so a client's cache can be checked against it."""
    secret, now = _str(args, "secret_id"), args.get("now", 0)
    if not isinstance(now, int) or isinstance(now, bool):
        raise QueryError("query argument 'now': expected an integer")
    read = reads.acl_token_by_secret(state, secret) if secret else reads.acl_token_by_accessor(
        state, ANONYMOUS_TOKEN_ID)  # fmt: skip
    index = max(read.index, state.table_index("acl-policies", "acl-roles"))
    interests = (*read.interests, *reads.acl_policies(state).interests, *reads.acl_roles(state).interests)
    token = read.value
    if token is None and not secret:  # no anonymous token stored yet: no policies, the default policy decides
        return Read(index, {"Token": None, "Policies": []}, interests)
    if token is None or (token.expiration_time and token.expiration_time < now):
        return Read(index, None, interests)
    rules = [{"Name": name, "Rules": text} for name, text in token_rules(state, token, _str(args, "datacenter"))]
    return Read(index, {"Token": token_json(state, token), "Policies": rules}, interests)


QUERIES: Mapping[str, Callable[[State, Mapping[str, Any]], Read[Any]]] = {
    "kv.get": _kv_get,
    "kv.list": _kv_list,
    "kv.keys": _kv_keys,
    "session.info": _session_info,
    "session.list": _session_list,
    "session.node": _session_node,
    "txn.read": _txn_read,
    "catalog.nodes": _catalog_nodes,
    "catalog.registered": _catalog_registered,
    "acl.token": _acl_token,
    "acl.token.self": _acl_token_self,
    "acl.tokens": _acl_tokens,
    "acl.policy": _acl_policy,
    "acl.policies": _acl_policies,
    "acl.role": _acl_role,
    "acl.roles": _acl_roles,
    "acl.identity": _acl_identity,
}


def reader(name: str, args: Mapping[str, Any]) -> Callable[[State], Read[Any]]:
    """``QUERIES[name]`` bound to ``args``; QueryError for an unknown name.  The arguments are checked when the
    read first runs."""
    fn = QUERIES.get(name)
    if fn is None:
        raise QueryError(f"unknown query {name!r}")
    return lambda state: fn(state, args)


def run(state: State, name: str, args: Mapping[str, Any]) -> Read[Any]:
    return reader(name, args)(state)
