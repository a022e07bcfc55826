"""Consul's ACL decisions, as pure functions of parsed policies: may this token read key ``app/x``?

Sources (hashicorp/consul): ``acl/policy_merger.go`` (`merge`), ``acl/policy.go`` ``takesPrecedenceOver``,
``acl/policy_authorizer.go`` (``getPolicy``, ``enforce``, ``anyAllowed``/``allAllowed``, ``KeyWritePrefix``,
mesh and peering falling back to operator), ``acl/static_authorizer.go`` (the default policy: ``allow`` allows
everything but ACL management and snapshots) and ``acl/chained_authorizer.go`` (the first authorizer with an
opinion decides).  The rules, in order:

1. **Merge** a token's policies into one (``MergePolicies``): per resource and rule name (exact and prefix rules
   apart), the level that takes precedence wins: ``deny`` > ``write`` > ``list`` > ``read``.  So ``deny`` beats
   everything *at the same name*; a ``deny`` on ``key_prefix "app/"`` does not beat a ``write`` on the longer
   ``key_prefix "app/x"`` (specificity comes first, step 2).  A service rule's ``intentions`` merge on their own.
2. **Look up** a name (``getPolicy``): an exact rule for it wins; else the longest prefix rule it starts with
   (``""`` matches everything); else no opinion.
3. **Enforce** the rule's level against what is needed (``enforce``): ``write`` grants read, list and write;
   ``list`` grants list and read; ``read`` grants read only (not a key listing); ``deny`` denies.
4. **No opinion** falls through to the default policy: ``allow`` allows everything except ``acl`` read/write
   (and snapshots), ``deny`` denies everything.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

from .rules import DENY, LIST, NAMED, READ, SCALARS, WRITE, PolicyRules, Rule

__all__ = [
    "Authorizer",
    "Decision",
    "enforce",
    "merge",
    "takes_precedence",
]

ALLOW_POLICY, DENY_POLICY = "allow", "deny"


class Decision(enum.Enum):
    """``acl.EnforcementDecision``: a rule allows, denies, or has no opinion (``Default``)."""

    ALLOW = "allow"
    DENY = "deny"
    DEFAULT = "default"


def takes_precedence(a: str, b: str) -> bool:
    """``takesPrecedenceOver``: does level ``a`` win over ``b`` when two policies set the same rule?"""
    for level in (DENY, WRITE, LIST, READ):
        if a == level:
            return True
        if b == level:
            return False
    return False


def merge(policies: Iterable[PolicyRules]) -> PolicyRules:
    """``MergePolicies``: one rule per (resource, exact or prefix, name) and one level per scalar, each the one
    that takes precedence (an equal level replaces, to the same effect).  Rules come out sorted: a value."""
    scalars = dict.fromkeys(SCALARS, "")
    named: dict[tuple[str, bool, str], Rule] = {}
    for policy in policies:
        for name in SCALARS:
            if takes_precedence(policy.scalar(name), scalars[name]):
                scalars[name] = policy.scalar(name)
        for rule in policy.rules:
            key = (rule.resource, rule.prefix, rule.name)
            existing = named.get(key)
            if existing is None:
                named[key] = rule
                continue
            if rule.resource == "service":  # policy and intentions merge separately
                level = rule.policy if takes_precedence(rule.policy, existing.policy) else existing.policy
                intentions = existing.intentions
                if takes_precedence(rule.intentions, existing.intentions):
                    intentions = rule.intentions
                named[key] = attrs.evolve(existing, policy=level, intentions=intentions)
            elif takes_precedence(rule.policy, existing.policy):
                named[key] = rule
    return PolicyRules(tuple(named[k] for k in sorted(named)), **scalars)


def enforce(level: str, need: str) -> Decision:
    """``enforce``: a rule of ``level`` against the ``need`` (read, list or write)."""
    if level == WRITE:
        return Decision.ALLOW
    if level == LIST:
        return Decision.ALLOW if need in (LIST, READ) else Decision.DENY
    if level == READ:
        return Decision.ALLOW if need == READ else Decision.DENY
    if level == DENY:
        return Decision.DENY
    return Decision.DEFAULT


@attrs.frozen
class _Leaf:
    """A radix leaf of Consul's authorizer: the exact rule's and the prefix rule's level for one name."""

    exact: str | None = None
    prefix: str | None = None


def _intentions(rule: Rule) -> str:
    """``loadRules``: a service rule without ``intentions`` grants intention read when it grants read."""
    if rule.intentions:
        return rule.intentions
    return READ if rule.policy in (READ, WRITE) else DENY


class Authorizer:
    """A token's decisions: its merged policies (`PolicyRules`), then the default policy (``allow``/``deny``).

    Built once per token (or per set of policies) and kept: every method is a few dict lookups."""

    def __init__(self, rules: PolicyRules, default_policy: str = DENY_POLICY) -> None:
        if default_policy not in (ALLOW_POLICY, DENY_POLICY):
            raise ValueError(f"default policy must be allow or deny, not {default_policy!r}")
        self.rules = rules
        self.default_allow = default_policy == ALLOW_POLICY
        leaves: dict[str, dict[str, _Leaf]] = {resource: {} for resource in (*NAMED, "intention")}
        for rule in rules.rules:
            self._insert(leaves[rule.resource], rule.name, rule.policy, rule.prefix)
            if rule.resource == "service":
                self._insert(leaves["intention"], rule.name, _intentions(rule), rule.prefix)
        self._leaves: Mapping[str, dict[str, _Leaf]] = leaves

    @classmethod
    def of(cls, policies: Iterable[PolicyRules], default_policy: str = DENY_POLICY) -> Authorizer:
        return cls(merge(policies), default_policy)

    @staticmethod
    def _insert(tree: dict[str, _Leaf], name: str, level: str, prefix: bool) -> None:
        leaf = tree.get(name, _Leaf())
        tree[name] = attrs.evolve(leaf, prefix=level) if prefix else attrs.evolve(leaf, exact=level)

    # -------------------------------------------------------------- the policies' own opinion

    def rule_for(self, resource: str, name: str) -> str | None:
        """``getPolicy``: the level of the exact rule for ``name``, else of the longest prefix rule it starts
        with; None when no rule matches."""
        tree = self._leaves[resource]
        leaf = tree.get(name)
        if leaf is not None and leaf.exact is not None:
            return leaf.exact
        for end in range(len(name), -1, -1):
            leaf = tree.get(name[:end])
            if leaf is not None and leaf.prefix is not None:
                return leaf.prefix
        return None

    def decide(self, resource: str, name: str = "", need: str = READ) -> Decision:
        """The policies' decision on ``need`` (read, list, write) of ``resource`` ``name`` (scalar resources
        ignore the name); `Decision.DEFAULT` when they have no opinion."""
        if resource in SCALARS:
            level = self.rules.scalar(resource)
            if not level and resource in ("mesh", "peering"):
                level = self.rules.operator  # MeshRead/PeeringRead default to OperatorRead
            return enforce(level, need) if level else Decision.DEFAULT
        level = self.rule_for(resource, name)
        return Decision.DEFAULT if level is None else enforce(level, need)

    def _default(self, resource: str) -> bool:
        """``StaticAuthorizer``: ``allow`` grants everything but ACL management (and snapshots)."""
        return self.default_allow and resource != "acl"

    def allowed(self, resource: str, name: str = "", need: str = READ) -> bool:
        """The chained answer: the policies' decision, else the default policy's."""
        decision = self.decide(resource, name, need)
        if decision is Decision.DEFAULT:
            return self._default(resource)
        return decision is Decision.ALLOW

    # -------------------------------------------------------------- whole-tree questions

    def key_write_prefix(self, prefix: str) -> bool:
        """``KeyWritePrefix`` (a recursive delete): the longest prefix rule covering ``prefix`` must grant write,
        and no rule under ``prefix`` (exact or prefix) may grant less; no rule at all: the default."""
        tree = self._leaves["key"]
        base = Decision.DEFAULT
        for end in range(len(prefix) + 1):
            leaf = tree.get(prefix[:end])
            if leaf is not None and leaf.prefix is not None:
                base = Decision.ALLOW if leaf.prefix == WRITE else Decision.DENY
        if base is Decision.DENY:
            return False
        for name, leaf in tree.items():
            if name.startswith(prefix) and (leaf.exact not in (None, WRITE) or leaf.prefix not in (None, WRITE)):
                return False
        return base is Decision.ALLOW or (base is Decision.DEFAULT and self._default("key"))

    def _leaf_decision(self, leaf: _Leaf, need: str, prefix_only: bool, *, any_mode: bool) -> Decision:
        if any_mode:  # anyAllowed's callback
            decision = enforce(leaf.prefix, need) if leaf.prefix is not None else Decision.DEFAULT
            if prefix_only or decision is Decision.ALLOW or leaf.exact is None:
                return decision
            return enforce(leaf.exact, need)
        prefix_decision = enforce(leaf.prefix, need) if leaf.prefix is not None else Decision.DEFAULT  # allAllowed's
        if prefix_only or prefix_decision is Decision.DENY or leaf.exact is None:
            return prefix_decision
        decision = enforce(leaf.exact, need)
        return prefix_decision if decision is Decision.DEFAULT else decision

    def _whole_tree(self, resource: str, need: str, *, any_mode: bool) -> bool:
        """``allAllowed`` (stops at the first rule that denies) and ``anyAllowed`` (at the first that allows): a
        catch-all ``""`` prefix rule decides first, any rule may then override it; no decision: the default."""
        tree = self._leaves[resource]
        stop = Decision.ALLOW if any_mode else Decision.DENY
        decision = Decision.DEFAULT
        root = tree.get("")
        if root is not None:
            decision = self._leaf_decision(root, need, True, any_mode=any_mode)
        if decision is not stop and any(
            self._leaf_decision(tree[name], need, False, any_mode=any_mode) is stop for name in sorted(tree)
        ):
            decision = stop
        return decision is Decision.ALLOW or (decision is Decision.DEFAULT and self._default(resource))

    def all_allowed(self, resource: str, need: str = READ) -> bool:
        """``allAllowed`` (``NodeReadAll``, ``ServiceReadAll``): nothing denies ``need`` on any name."""
        return self._whole_tree(resource, need, any_mode=False)

    def any_allowed(self, resource: str, need: str = WRITE) -> bool:
        """``anyAllowed`` (``ServiceWriteAny``): some rule grants ``need`` on some name."""
        return self._whole_tree(resource, need, any_mode=True)
