"""A request's secret to its `Identity` (accessor ID and `Authorizer`), on any agent (hashicorp/consul
``agent/consul/acl.go`` ``ACLResolver``, ``agent/acl.go``).

* **ACLs off**: every secret is the one allow-all identity (tokens are ignored, as Consul does).
* **The agent recovery token** (``acl.tokens.agent_recovery``) resolves here, with no server: ``agent "<node>"
  write`` and ``node_prefix "" read``, nothing else (Consul's ``agentRecoveryAuthorizer``).
* **A server** resolves from its own replicated store (`AuthorizerCache`, keyed by the ACL tables' indexes: any
  ACL write, a token deletion included, invalidates every answer at once).
* **A client** asks a server (the named read ``acl.identity``, forwarded like every read) and keeps the answer
  for ``acl.token_ttl``, tagged with the servers' ACL index it was read at.  `watch` holds a blocking read of that
  index: when an ACL write lands, every answer read before it is stale, so a deleted token is refused on the next
  request instead of ``token_ttl`` later.  When no server answers, ``acl.down_policy`` decides: ``extend-cache``
  and ``async-cache`` keep using a cached answer however old (none cached: the default policy), ``allow`` allows
  everything, ``deny`` denies everything.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from agent.acl.authorizer import Authorizer
from agent.acl.builtin import ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_RULES
from agent.acl.rules import PolicyRules, RulesError, parse_rules, parse_rules_cached

from .access import NoLeader, ReadMode, StoreAccess, StoreUnavailable
from .state.acl_resolve import ACLNotFound, AuthorizerCache

if TYPE_CHECKING:
    from agent.acl.agent_tokens import AgentTokens
    from agent.config import ACLConfig, ACLTokens

    from .state.tables import State

__all__ = ["ALLOW_ALL", "ACLNotFound", "Identity", "TokenResolver"]

log = logging.getLogger("agent.acl")

#: The accessor Consul reports for the agent recovery token (``structs.NewAgentRecoveryTokenIdentity``).
AGENT_RECOVERY_ACCESSOR = "agent-recovery-token"


@attrs.frozen
class Identity:
    """Who a request is: the token's accessor ID (for refusal texts) and its decisions."""

    accessor_id: str
    authorizer: Authorizer


ALLOW_ALL = Identity("", Authorizer.of([parse_rules(GLOBAL_MANAGEMENT_RULES)], "allow"))
_DENY_ALL = Identity(ANONYMOUS_TOKEN_ID, Authorizer(PolicyRules(), "deny"))


def _agent_recovery(node_name: str) -> Identity:
    rules = f'agent "{node_name}" {{\n  policy = "write"\n}}\nnode_prefix "" {{\n  policy = "read"\n}}\n'
    return Identity(AGENT_RECOVERY_ACCESSOR, Authorizer(parse_rules(rules), "deny"))


@attrs.frozen
class _Cached:
    """A client's answer from the servers: the identity (None: ``ACL not found``), when it was read (monotonic),
    and the servers' ACL index it was read at."""

    identity: Identity | None
    read_at: float
    acl_index: int


class TokenResolver:
    """One per agent; `resolve` is what every HTTP endpoint, the stream and DNS ask."""

    def __init__(self, acl: ACLConfig, *, node_name: str, datacenter: str, access: StoreAccess,
                 tokens: Callable[[], ACLTokens | AgentTokens], local_state: Callable[[], State] | None = None,
                 clock: Callable[[], float] = time.monotonic, size: int = 4096) -> None:  # fmt: skip
        self.acl = acl
        self.datacenter = datacenter
        self.access = access
        #: The agent's own tokens (``acl.tokens``): a function, so tokens set at runtime can stand in later.
        self.tokens = tokens
        self.local_state = local_state
        self.clock = clock
        self.size = size
        self._recovery = _agent_recovery(node_name)
        self._down = Identity("", Authorizer(PolicyRules(), acl.default_policy))
        self._server_cache = AuthorizerCache(datacenter, acl.default_policy)
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._down_logged = False
        #: The highest ACL index the servers reported (by `watch` or any answer): older answers are stale.
        self.acl_index = 0

    @property
    def enabled(self) -> bool:
        return self.acl.enabled

    async def resolve(self, secret: str) -> Identity:
        """The identity of ``secret`` ("" is the anonymous token); ACLNotFound for an unknown or expired one."""
        if not self.acl.enabled:
            return ALLOW_ALL
        recovery = self.tokens().agent_recovery
        if secret and recovery and secret == recovery:
            return self._recovery
        if self.local_state is not None:
            resolved = self._server_cache.resolve(self.local_state(), secret, time.time_ns())
            token = resolved.token
            return Identity(token.accessor_id if token is not None else ANONYMOUS_TOKEN_ID, resolved.authorizer)
        return await self._resolve_remote(secret)

    # ------------------------------------------------------------------ DNS: answered synchronously

    def dns_secret(self) -> str:
        """DNS asks as the ``dns`` token, else the ``default`` token, else anonymous (Consul's DNS token)."""
        tokens = self.tokens()
        return tokens.dns or tokens.default

    def view(self, secret: str) -> Authorizer | None:
        """The decisions of ``secret`` now, without waiting (None: ACLs off): a server resolves from its store, a
        client uses its last answer (`refresh` keeps it current), none yet: the default policy.  An unknown token
        sees nothing."""
        if not self.acl.enabled:
            return None
        recovery = self.tokens().agent_recovery
        if secret and recovery and secret == recovery:
            return self._recovery.authorizer
        try:
            if self.local_state is not None:
                return self._server_cache.resolve(self.local_state(), secret, time.time_ns()).authorizer
        except ACLNotFound:
            return _DENY_ALL.authorizer
        entry = self._cache.get(secret)
        if entry is None:
            return self._down.authorizer
        return _DENY_ALL.authorizer if entry.identity is None else entry.identity.authorizer

    async def refresh(self, secret: Callable[[], str], *, every: float = 1.0) -> None:
        """A client keeps ``secret()``'s answer current for `view` (a cache hit costs nothing; a stale one asks
        the servers).  Runs until cancelled."""
        if not self.acl.enabled or self.local_state is not None:
            return
        while True:
            with contextlib.suppress(ACLNotFound):
                await self.resolve(secret())
            await trio.sleep(every)

    # ------------------------------------------------------------------ a client

    def _fresh(self, entry: _Cached) -> bool:
        return entry.acl_index >= self.acl_index and self.clock() - entry.read_at < self.acl.token_ttl

    async def _resolve_remote(self, secret: str) -> Identity:
        entry = self._cache.get(secret)
        if entry is None or not self._fresh(entry):
            try:
                entry = await self._fetch(secret)
            except (NoLeader, StoreUnavailable) as exc:
                return self._down_policy(secret, entry, exc)
        if entry.identity is None:
            raise ACLNotFound()
        return entry.identity

    async def _fetch(self, secret: str) -> _Cached:
        args = {"secret_id": secret, "datacenter": self.datacenter, "now": time.time_ns()}
        result = await self.access.query("acl.identity", args, ReadMode())
        identity = None if result.value is None else self._identity(result.value)
        self._down_logged = False
        self.acl_index = max(self.acl_index, result.index)
        entry = _Cached(identity, self.clock(), result.index)
        self._cache[secret] = entry
        self._cache.move_to_end(secret)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return entry

    def _identity(self, value: dict[str, Any]) -> Identity:
        rules: list[PolicyRules] = []
        for policy in value["Policies"]:
            try:
                rules.append(parse_rules_cached(policy["Rules"]))
            except RulesError as exc:
                log.error("acl: policy %r does not parse: %s", policy.get("Name"), exc)
        token = value["Token"]
        accessor = token["AccessorID"] if token else ANONYMOUS_TOKEN_ID
        return Identity(accessor, Authorizer.of(rules, self.acl.default_policy))

    def _down_policy(self, secret: str, entry: _Cached | None, exc: Exception) -> Identity:
        policy = self.acl.down_policy
        if not self._down_logged:  # once per outage, not once per request
            log.warning("acl: no server answered a token resolution (%s); down_policy %s applies", exc, policy)
            self._down_logged = True
        if policy == "allow":
            return ALLOW_ALL
        if policy == "deny":
            return _DENY_ALL
        if entry is not None:  # extend-cache, async-cache: the last answer, however old
            if entry.identity is None:
                raise ACLNotFound()
            return entry.identity
        return self._down

    async def watch(self, *, retry: float = 1.0, wait: float = 300.0) -> None:
        """A client's blocking read of the servers' ACL index (every ACL table): each change makes every cached
        answer read before it stale.  Runs until cancelled; a failed read is retried after ``retry`` seconds."""
        if not self.acl.enabled or self.local_state is not None:
            return
        args = {"secret_id": "", "datacenter": self.datacenter, "now": 0}
        while True:
            try:
                mode = ReadMode(index=max(1, self.acl_index), wait=wait)  # index 0 would not block
                result = await self.access.query("acl.identity", args, mode)
            except (NoLeader, StoreUnavailable, ValueError) as exc:
                log.debug("acl: watching the ACL index: %s", exc)
                await trio.sleep(retry)
                continue
            if result.index > self.acl_index:
                self.acl_index = result.index
            elif result.index < self.acl_index:  # a restored or new cluster: start over from its index
                self.acl_index = result.index
                self._cache.clear()
