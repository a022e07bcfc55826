"""protocol.state: memberlist's alive/suspect/dead precedence rules, one table row per case."""

from __future__ import annotations

import pytest

from protocol.state import (
    MERGE_AS,
    ON_DEAD,
    ON_SUSPECT,
    Action,
    MergeAs,
    NodeState,
    NodeStateType,
    Notify,
    judge_alive,
    judge_dead,
    judge_suspect,
    notify_after_alive,
    valid_versions,
    verify_protocol,
)

A, S, D, L = NodeStateType.ALIVE, NodeStateType.SUSPECT, NodeStateType.DEAD, NodeStateType.LEFT
ME = "me"
HOME = ("10.0.0.1", 7946)
AWAY = ("10.0.0.2", 7946)
VSN = bytes((1, 5, 2, 2, 5, 4))


def known(name: str = "n", state: NodeStateType = A, inc: int = 5, addr=HOME, change: float = 0.0, meta=b"m"):
    return NodeState(name, addr, meta, inc, state, change, VSN)


def alive(
    current, *, node="n", inc=5, addr=HOME, meta=b"m", vsn=VSN, left=False, bootstrap=False, now=100.0, reclaim=0.0
):
    return judge_alive(
        current,
        node=node,
        incarnation=inc,
        addr=addr,
        meta=meta,
        vsn=vsn,
        local_name=ME,
        has_left=left,
        bootstrap=bootstrap,
        now=now,
        reclaim_time=reclaim,
    )


# (description, current, alive kwargs, expected action, is_new, updates_addr)
ALIVE_TABLE = [
    ("unknown node is added and applied", None, {"inc": 1}, Action.APPLY, True, False),
    ("unknown node at inc 0 is recorded but not applied", None, {"inc": 0}, Action.IGNORE, True, False),
    ("newer incarnation wins", known(inc=5), {"inc": 6}, Action.APPLY, False, False),
    ("same incarnation is stale", known(inc=5), {"inc": 5}, Action.IGNORE, False, False),
    ("older incarnation is stale", known(inc=5), {"inc": 4}, Action.IGNORE, False, False),
    ("suspect revived by newer inc", known(state=S, inc=5), {"inc": 6}, Action.APPLY, False, False),
    ("suspect not revived by same inc", known(state=S, inc=5), {"inc": 5}, Action.IGNORE, False, False),
    ("dead revived by newer inc", known(state=D, inc=5), {"inc": 6}, Action.APPLY, False, False),
    ("left revived by newer inc", known(state=L, inc=5), {"inc": 6}, Action.APPLY, False, False),
    ("live name at other address conflicts", known(inc=5), {"inc": 9, "addr": AWAY}, Action.CONFLICT, False, False),
    (
        "suspect name at other address conflicts",
        known(state=S),
        {"inc": 9, "addr": AWAY},
        Action.CONFLICT,
        False,
        False,
    ),
    (
        "left name may move, even at same inc",
        known(state=L, inc=5),
        {"inc": 5, "addr": AWAY},
        Action.APPLY,
        False,
        True,
    ),
    (
        "dead name may not move without reclaim time",
        known(state=D, change=0.0),
        {"inc": 9, "addr": AWAY},
        Action.CONFLICT,
        False,
        False,
    ),
    (
        "dead name moves after reclaim time",
        known(state=D, change=0.0),
        {"inc": 1, "addr": AWAY, "reclaim": 30.0},
        Action.APPLY,
        False,
        True,
    ),
    (
        "dead name does not move before reclaim time",
        known(state=D, change=80.0),
        {"inc": 9, "addr": AWAY, "reclaim": 30.0},
        Action.CONFLICT,
        False,
        False,
    ),
    ("bad versions pmin 0", None, {"vsn": bytes((0, 5, 2, 2, 5, 4))}, Action.IGNORE, False, False),
    ("bad versions pmin > pmax", None, {"vsn": bytes((5, 4, 2, 2, 5, 4))}, Action.IGNORE, False, False),
    ("empty vsn is fine", None, {"inc": 1, "vsn": b""}, Action.APPLY, True, False),
    # about ourselves
    ("our own echo is ignored", known(ME, inc=5), {"node": ME, "inc": 5}, Action.IGNORE, False, False),
    ("older about us is ignored", known(ME, inc=5), {"node": ME, "inc": 4, "meta": b"x"}, Action.IGNORE, False, False),
    (
        "same inc other meta about us is refuted",
        known(ME, inc=5),
        {"node": ME, "inc": 5, "meta": b"x"},
        Action.REFUTE,
        False,
        False,
    ),
    (
        "same inc other vsn about us is refuted",
        known(ME, inc=5),
        {"node": ME, "inc": 5, "vsn": bytes(6)[:2]},
        Action.REFUTE,
        False,
        False,
    ),
    ("newer about us is refuted", known(ME, inc=5), {"node": ME, "inc": 7}, Action.REFUTE, False, False),
    (
        "bootstrap applies our own alive",
        known(ME, inc=5),
        {"node": ME, "inc": 6, "bootstrap": True},
        Action.APPLY,
        False,
        False,
    ),
    (
        "after leaving, alive about us is ignored",
        known(ME, state=L),
        {"node": ME, "inc": 9, "left": True},
        Action.IGNORE,
        False,
        False,
    ),
    (
        "our name from another address conflicts",
        known(ME, inc=5),
        {"node": ME, "inc": 9, "addr": AWAY},
        Action.CONFLICT,
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("current", "kwargs", "action", "is_new", "updates"), [r[1:] for r in ALIVE_TABLE], ids=[r[0] for r in ALIVE_TABLE]
)
def test_alive_rules(current, kwargs, action, is_new, updates):
    verdict = alive(current, **kwargs)
    assert verdict.action is action, verdict.reason
    assert verdict.is_new is is_new
    assert verdict.updates_addr is updates


# (description, current, incarnation, suspicion running, expected)
SUSPECT_TABLE = [
    ("unknown", None, 5, False, Action.IGNORE),
    ("older incarnation", known(inc=5), 4, False, Action.IGNORE),
    ("alive becomes suspect", known(inc=5), 5, False, Action.SUSPECT),
    ("newer incarnation suspect", known(inc=5), 8, False, Action.SUSPECT),
    ("running timer confirms", known(state=S, inc=5), 5, True, Action.CONFIRM),
    ("suspect without timer ignored", known(state=S, inc=5), 5, False, Action.IGNORE),
    ("dead ignored", known(state=D, inc=5), 6, False, Action.IGNORE),
    ("left ignored", known(state=L, inc=5), 6, False, Action.IGNORE),
    ("about us refuted", known(ME, inc=5), 5, False, Action.REFUTE),
    ("old about us ignored", known(ME, inc=5), 4, False, Action.IGNORE),
]


@pytest.mark.parametrize(
    ("current", "inc", "running", "action"), [r[1:] for r in SUSPECT_TABLE], ids=[r[0] for r in SUSPECT_TABLE]
)
def test_suspect_rules(current, inc, running, action):
    assert judge_suspect(current, incarnation=inc, local_name=ME, suspicion_running=running).action is action


# (description, current, incarnation, from, has_left, expected action, new state)
DEAD_TABLE = [
    ("unknown", None, 5, "x", False, Action.IGNORE, None),
    ("older incarnation", known(inc=5), 4, "x", False, Action.IGNORE, None),
    ("alive dies", known(inc=5), 5, "x", False, Action.KILL, D),
    ("suspect dies", known(state=S, inc=5), 5, "x", False, Action.KILL, D),
    ("from == node means left", known(inc=5), 5, "n", False, Action.KILL, L),
    ("suspect leaves", known(state=S, inc=5), 6, "n", False, Action.KILL, L),
    ("already dead", known(state=D, inc=5), 6, "x", False, Action.IGNORE, None),
    ("already left", known(state=L, inc=5), 6, "n", False, Action.IGNORE, None),
    ("dead about us refuted", known(ME, inc=5), 5, "x", False, Action.REFUTE, None),
    ("our own leave", known(ME, inc=5), 5, ME, True, Action.KILL, L),
]


@pytest.mark.parametrize(
    ("current", "inc", "from_", "left", "action", "new_state"),
    [r[1:] for r in DEAD_TABLE],
    ids=[r[0] for r in DEAD_TABLE],
)
def test_dead_rules(current, inc, from_, left, action, new_state):
    verdict = judge_dead(current, incarnation=inc, from_=from_, local_name=ME, has_left=left)
    assert verdict.action is action
    assert verdict.new_state == new_state
    # from the incarnation check on, any suspicion timer goes, whatever the outcome
    assert verdict.clear_suspicion == (current is not None and inc >= current.incarnation)


def test_state_tables_cover_every_state():
    assert set(ON_SUSPECT) == set(ON_DEAD) == set(MERGE_AS) == set(NodeStateType)
    assert MERGE_AS == {A: MergeAs.ALIVE, S: MergeAs.SUSPECT, D: MergeAs.SUSPECT, L: MergeAs.LEFT}


@pytest.mark.parametrize(
    ("old", "old_meta", "new_meta", "expected"),
    [
        (D, b"a", b"a", Notify.JOIN),
        (L, b"a", b"b", Notify.JOIN),
        (A, b"a", b"b", Notify.UPDATE),
        (S, b"a", b"b", Notify.UPDATE),
        (A, b"a", b"a", Notify.NONE),
        (S, b"a", b"a", Notify.NONE),
    ],
)
def test_notify_after_alive(old, old_meta, new_meta, expected):
    assert notify_after_alive(old, old_meta, new_meta) is expected


@pytest.mark.parametrize(
    ("vsn", "ok"),
    [
        (b"", True),
        (b"\x01\x05", True),
        (VSN, True),
        (bytes((0, 5, 2)), False),
        (bytes((1, 0, 2)), False),
        (bytes((3, 2, 2)), False),
    ],
)
def test_valid_versions(vsn, ok):
    assert valid_versions(vsn) is ok


def test_verify_protocol_accepts_real_serf_nodes():
    # What serf 0.10 advertises: memberlist 1..5 speaking 2, serf 2..5 speaking 4.
    local = [known(ME), known("x", state=D)]
    remote = [("serf1", A, VSN), ("serf2", S, VSN), ("old", A, bytes((1, 4, 2, 2, 4, 3)))]
    assert verify_protocol(remote, local) is None


def test_verify_protocol_checks_every_node_as_go_does():
    # Go skips non-alive nodes when computing the common range but checks everyone's speaking version.
    local = [known(ME)]
    assert verify_protocol([("gone", D, bytes((1, 2, 1, 0, 0, 0)))], local) is not None
    assert verify_protocol([("bare", S, b"")], local) is not None


def test_verify_protocol_rejects_incompatible_versions():
    local = [known(ME)]
    err = verify_protocol([("old", A, bytes((1, 1, 1, 2, 5, 4)))], local)
    assert err is not None and "protocol version (2)" in err  # our pcur 2 > their pmax 1
    err = verify_protocol([("odd", A, bytes((1, 5, 2, 2, 5, 9)))], local)
    assert err is not None and "delegate protocol version (9)" in err
    assert verify_protocol([("short", A, b"\x01\x05\x02")], local) is not None
