"""Consul user events: the wire form (Consul's bytes), the receive-side filters, the ring, and the two endpoints
over real sockets (agent/events.py, agent/http/events.py).

The expected bytes are written out by hand from Consul's source: agent/user_event.go's struct (codec tags ID, n,
p omitempty, nf, sf, tf omitempty, v; LTime not encoded) encoded by agent/util.go's handle (WriteExt: strings as
msgpack str with str8 for 32..255 bytes, []byte as bin8), fields in declaration order, no message-type byte.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
import msgpack
import pytest
import trio
from http_fakes import FakeAgent, fetch, run, serving

from agent.event_log import EventLog
from agent.events import (
    BUFFER_SIZE,
    EventDecodeError,
    UserEvent,
    accepts,
    consul_name,
    decode,
    encode,
    new_event,
    serf_name,
    uuid_to_uint64,
)

EVENT_ID = "8b30edff-c26d-4be3-bf26-0f063fae3f0d"


def _str(text: str) -> bytes:
    raw = text.encode()
    head = bytes([0xA0 | len(raw)]) if len(raw) < 32 else bytes([0xD9, len(raw)])
    return head + raw


CONSUL_BYTES = (
    b"\x86"  # fixmap, 6 entries (p present; tf empty and omitted)
    + _str("ID") + b"\xd9\x24" + EVENT_ID.encode()  # 36-byte string: str8 (WriteExt)
    + _str("n") + _str("deploy")
    + _str("p") + b"\xc4\x05hello"  # []byte: bin8 (WriteExt)
    + _str("nf") + _str("web-.*")
    + _str("sf") + b"\xa0"  # not omitempty: an empty string is written
    + _str("v") + b"\x01"
)


def test_encode_is_consuls_bytes() -> None:
    event = UserEvent(EVENT_ID, "deploy", b"hello", node_filter="web-.*")
    assert encode(event) == CONSUL_BYTES


def test_decode_consuls_bytes_and_round_trip() -> None:
    assert decode(CONSUL_BYTES, ltime=7) == UserEvent(EVENT_ID, "deploy", b"hello", "web-.*", "", "", 1, 7)
    full = UserEvent(EVENT_ID, "n\u00e9", bytes(range(256)), "a", "b", "c", 1)
    assert decode(encode(full)) == full
    assert decode(encode(UserEvent(EVENT_ID, "x"))).payload is None  # nil payload stays nil (JSON null)


def test_decode_accepts_older_consuls_raw_strings_and_any_key_order() -> None:
    """Consul before WriteExt wrote []byte as raw (str) and sorted the keys: both decode to the same event."""
    old = msgpack.packb({"ID": EVENT_ID, "n": "deploy", "nf": "", "p": b"hello", "sf": "", "v": 1},
                        use_bin_type=False)
    assert decode(old) == UserEvent(EVENT_ID, "deploy", b"hello")
    extra = msgpack.packb({"v": 2, "n": "x", "future": [1, 2], "ID": "i"}, use_bin_type=True)
    assert decode(extra) == UserEvent("i", "x", version=2)


@pytest.mark.parametrize("data, fragment", [
    (b"", "not msgpack"),
    (b"\x93\x01\x02\x03", "not a map"),
    (msgpack.packb({"n": 5}), "'n'"),
    (msgpack.packb({"n": "x", "p": 3}), "'p'"),
    (msgpack.packb({"n": "x", "v": "one"}), "'v'"),
    (b"\x86\xa2ID", "not msgpack"),
])
def test_decode_rejects_garbage_with_a_precise_error(data: bytes, fragment: str) -> None:
    with pytest.raises(EventDecodeError, match=fragment):
        decode(data)


def test_serf_names() -> None:
    assert serf_name("deploy") == "consul:event:deploy"
    assert consul_name("consul:event:deploy") == "deploy"
    assert consul_name("consul:new-leader") is None
    assert consul_name("deploy") is None


def test_uuid_to_uint64_is_consuls_xor_of_halves() -> None:
    assert uuid_to_uint64("00000000-0000-0001-0000-000000000002") == 3
    assert uuid_to_uint64(EVENT_ID) == 3753436902792066286  # 0x8b30edffc26d4be3 ^ 0xbf260f063fae3f0d
    assert uuid_to_uint64("not-a-uuid") == 0


def test_validation_as_consul_words_it() -> None:
    with pytest.raises(ValueError, match=r"^User event missing name$"):
        new_event("")
    with pytest.raises(ValueError, match=r"^Cannot provide tag filter without service filter$"):
        new_event("x", tag="v1")
    with pytest.raises(ValueError, match=r"^Invalid service filter: error parsing regexp"):
        new_event("x", service="(")
    event = new_event("x", b"p", node="n", service="s", tag="t")
    assert event.version == 1 and len(event.id) == 36 and event.id != new_event("x").id


SERVICES = [("web-1", ("v1", "primary")), ("db", ())]


@pytest.mark.parametrize("filters, node, expected", [
    ({}, "n1", True),
    ({"node_filter": "^n"}, "n1", True),
    ({"node_filter": "1$"}, "n2", False),
    ({"node_filter": "("}, "n1", False),  # a filter that does not compile drops the event
    ({"service_filter": "web"}, "n1", True),  # matched anywhere in the service ID
    ({"service_filter": "^eb"}, "n1", False),
    ({"service_filter": "web", "tag_filter": "prim"}, "n1", True),
    ({"service_filter": "db", "tag_filter": "prim"}, "n1", False),  # the tag must be on a matching service
    ({"service_filter": ".", "tag_filter": "v2"}, "n1", False),
    ({"node_filter": "n1", "service_filter": "cache"}, "n1", False),
])
def test_receive_filters(filters: dict[str, str], node: str, expected: bool) -> None:
    assert accepts(UserEvent(EVENT_ID, "e", **filters), node, SERVICES) is expected


def test_ring_keeps_the_last_256_and_indexes_by_last_id() -> None:
    log = EventLog()
    assert log.events() == [] and EventLog.index([]) == 1
    for i in range(BUFFER_SIZE + 10):
        log.add(UserEvent(f"00000000-0000-0000-0000-{i:012x}", "even" if i % 2 == 0 else "odd", ltime=i))
    events = log.events()
    assert len(events) == BUFFER_SIZE
    assert [e.ltime for e in events] == list(range(10, BUFFER_SIZE + 10))
    assert all(e.name == "odd" for e in log.events("odd")) and len(log.events("odd")) == BUFFER_SIZE // 2
    assert EventLog.index(events) == BUFFER_SIZE + 9


# --------------------------------------------------------------------------- the endpoints over real sockets


@attrs.define
class EventAgent(FakeAgent):
    """FakeAgent plus the event seam: a fired event comes back as Serf delivers one to its sender."""

    events: EventLog = attrs.Factory(EventLog)
    fired: list[UserEvent] = attrs.Factory(list)
    fire_error: str | None = None

    async def fire_event(self, event: UserEvent) -> None:
        if self.fire_error:
            raise ValueError(self.fire_error)
        self.fired.append(event)
        self.events.add(decode(encode(event), ltime=len(self.fired)))


def _json(reply: Any) -> Any:
    return json.loads(reply.body)


def test_fire_answers_the_event_and_list_shows_it() -> None:
    async def main() -> None:
        api = EventAgent()
        async with serving(api) as addr:
            reply = await fetch(addr, "PUT", "/v1/event/fire/deploy?node=n.*&service=web&tag=v1", b"\x00\xffbin")
            assert reply.status == 200, reply.body
            fired = _json(reply)
            assert fired["Name"] == "deploy" and base64.b64decode(fired["Payload"]) == b"\x00\xffbin"
            assert (fired["NodeFilter"], fired["ServiceFilter"], fired["TagFilter"]) == ("n.*", "web", "v1")
            assert fired["Version"] == 1 and fired["LTime"] == 0
            assert api.fired[0].id == fired["ID"]
            empty = _json(await fetch(addr, "PUT", "/v1/event/fire/other"))
            assert empty["Payload"] is None
            listed = await fetch(addr, "GET", "/v1/event/list")
            assert [e["Name"] for e in _json(listed)] == ["deploy", "other"]
            assert [e["LTime"] for e in _json(listed)] == [1, 2]
            assert listed.header("X-Consul-Index") == str(uuid_to_uint64(empty["ID"]))
            only = await fetch(addr, "GET", "/v1/event/list?name=deploy")
            assert [e["ID"] for e in _json(only)] == [fired["ID"]]
            assert only.header("X-Consul-Index") == str(uuid_to_uint64(fired["ID"]))
            none = await fetch(addr, "GET", "/v1/event/list?name=nothing")
            assert _json(none) == [] and none.header("X-Consul-Index") == "1"

    run(main)


@pytest.mark.parametrize("target, status, text", [
    ("/v1/event/fire/", 400, "Missing name"),
    ("/v1/event/fire/x?tag=a", 500, "Cannot provide tag filter without service filter"),
    ("/v1/event/fire/x?node=(", 500, "Invalid node filter: error parsing regexp"),
    ("/v1/event/fire/x?dc=elsewhere", 500, "No path to datacenter"),
])
def test_fire_errors(target: str, status: int, text: str) -> None:
    async def main() -> None:
        api = EventAgent()
        async with serving(api) as addr:
            reply = await fetch(addr, "PUT", target)
            assert reply.status == status and reply.body.decode().startswith(text), reply
            assert api.fired == []
            assert (await fetch(addr, "GET", "/v1/event/fire/x")).status == 405

    run(main)


def test_fire_over_the_size_limit_is_a_500_with_serfs_reason() -> None:
    async def main() -> None:
        api = EventAgent(fire_error="user event exceeds the configured limit of 512 bytes")
        async with serving(api) as addr:
            reply = await fetch(addr, "PUT", "/v1/event/fire/big", b"a" * 600)
            assert reply.status == 500 and b"512 bytes" in reply.body

    run(main)


@pytest.mark.parametrize("query, text", [("wait=soon", "Invalid wait time"), ("index=-1", "Invalid index")])
def test_list_rejects_bad_blocking_parameters(query: str, text: str) -> None:
    async def main() -> None:
        async with serving(EventAgent()) as addr:
            reply = await fetch(addr, "GET", f"/v1/event/list?{query}")
            assert (reply.status, reply.body.decode()) == (400, text)

    run(main)


def test_list_blocks_while_the_index_is_the_one_asked_for() -> None:
    """Consul's EventList: an equal index waits for the next event (or ?wait); a different one answers at once."""

    async def main() -> None:
        api = EventAgent()
        async with serving(api) as addr:
            await fetch(addr, "PUT", "/v1/event/fire/first")
            index = int((await fetch(addr, "GET", "/v1/event/list")).header("X-Consul-Index") or 0)
            with trio.fail_after(5):  # not equal: no blocking at all
                assert len(_json(await fetch(addr, "GET", f"/v1/event/list?index={index + 1}&wait=1m"))) == 1
            start = trio.current_time()
            timed_out = await fetch(addr, "GET", f"/v1/event/list?index={index}&wait=300ms")
            assert trio.current_time() - start >= 0.3
            assert timed_out.header("X-Consul-Index") == str(index) and len(_json(timed_out)) == 1
            result: list[Any] = []

            async def blocked() -> None:
                result.append(await fetch(addr, "GET", f"/v1/event/list?index={index}&wait=1m"))

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(blocked)
                    await trio.sleep(0.2)
                    assert result == []  # still parked
                    await fetch(addr, "PUT", "/v1/event/fire/second")
            names = [e["Name"] for e in _json(result[0])]
            assert names == ["first", "second"]
            assert result[0].header("X-Consul-Index") == str(uuid_to_uint64(api.fired[-1].id))

    run(main)


def test_list_with_a_name_keeps_blocking_through_other_events() -> None:
    async def main() -> None:
        api = EventAgent()
        async with serving(api) as addr:
            result: list[Any] = []

            async def blocked() -> None:  # no "deploy" events yet: index 1
                result.append(await fetch(addr, "GET", "/v1/event/list?name=deploy&index=1&wait=1m"))

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(blocked)
                    await trio.sleep(0.2)
                    await fetch(addr, "PUT", "/v1/event/fire/unrelated")
                    await trio.sleep(0.2)
                    assert result == []  # woken, index still 1, parked again
                    await fetch(addr, "PUT", "/v1/event/fire/deploy")
            assert [e["Name"] for e in _json(result[0])] == ["deploy"]

    run(main)
