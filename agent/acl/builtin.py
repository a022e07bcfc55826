"""The ACL objects every cluster has: Consul's built-in policies and the anonymous token (agent/structs/acl.go).

IDs starting with `RESERVED_PREFIX` are Consul's own; a user cannot create a token or policy with one.
"""

from __future__ import annotations

__all__ = [
    "ANONYMOUS_DESCRIPTION",
    "ANONYMOUS_SECRET",
    "ANONYMOUS_TOKEN_ID",
    "BOOTSTRAP_DESCRIPTION",
    "GLOBAL_MANAGEMENT_DESCRIPTION",
    "GLOBAL_MANAGEMENT_ID",
    "GLOBAL_MANAGEMENT_NAME",
    "GLOBAL_MANAGEMENT_RULES",
    "GLOBAL_READ_ONLY_DESCRIPTION",
    "GLOBAL_READ_ONLY_ID",
    "GLOBAL_READ_ONLY_NAME",
    "GLOBAL_READ_ONLY_RULES",
    "INITIAL_MANAGEMENT_DESCRIPTION",
    "RESERVED_PREFIX",
    "is_reserved",
]

RESERVED_PREFIX = "00000000-0000-0000-0000-0000000000"

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_NAME = "global-management"
GLOBAL_MANAGEMENT_DESCRIPTION = "Builtin Policy that grants unlimited access"
GLOBAL_MANAGEMENT_RULES = """
acl = "write"
agent_prefix "" {
	policy = "write"
}
event_prefix "" {
	policy = "write"
}
key_prefix "" {
	policy = "write"
}
keyring = "write"
node_prefix "" {
	policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
	policy = "write"
}
service_prefix "" {
	policy = "write"
	intentions = "write"
}
session_prefix "" {
	policy = "write"
}"""

GLOBAL_READ_ONLY_ID = "00000000-0000-0000-0000-000000000002"
GLOBAL_READ_ONLY_NAME = "builtin/global-read-only"
GLOBAL_READ_ONLY_DESCRIPTION = "Builtin Policy that grants unlimited read-only access to all components"
GLOBAL_READ_ONLY_RULES = GLOBAL_MANAGEMENT_RULES.replace('"write"', '"read"')

#: The token of requests that carry none (a token, not a policy: the same ID as the read-only policy's).
ANONYMOUS_TOKEN_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"
ANONYMOUS_DESCRIPTION = "Anonymous Token"
BOOTSTRAP_DESCRIPTION = "Bootstrap Token (Global Management)"
INITIAL_MANAGEMENT_DESCRIPTION = "Initial Management Token"


def is_reserved(uuid: str) -> bool:
    """``ACLIDReserved``."""
    return uuid.startswith(RESERVED_PREFIX)
