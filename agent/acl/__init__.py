"""Consul's ACL system, sans-IO: the rule language (`rules`) and the decisions made from it (`authorizer`).

Nothing here reads a clock, a socket or the state store: the servers' store keeps tokens, policies and roles
(``agent/server/state/acl.py``) and resolves a secret to an `authorizer.Authorizer` with these functions.
"""
