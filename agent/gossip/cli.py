"""The bare gossip node that ``python -m agent.gossip`` runs (Serf over memberlist, no agent around it), for
interop tests with the ``serf`` binary and benches.  It binds, joins, writes its members file on every change, and
on SIGINT/SIGTERM leaves gracefully (a second signal abandons the leave).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import random
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import trio

from agent.gossip.driver import Addr, GossipDriver, Machine, is_wildcard, parse_addr
from agent.gossip.members_file import write_members_file
from protocol.config import Config
from protocol.keyring import Keyring, KeyringError
from protocol.serf import Serf

log = logging.getLogger("triumvir.gossip")


def _parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"tag must be k=v, got {text!r}")
    return key, value


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent.gossip", description="Run a bare triumvir gossip node.")
    p.add_argument("--name", required=True, help="node name, unique in the cluster")
    p.add_argument("--bind", default="127.0.0.1:7946", help="IP:PORT for UDP and TCP (port 0: any free port)")
    p.add_argument("--advertise", default=None, help="IP to advertise (default: the bind IP)")
    p.add_argument("--join", action="append", default=[], help="IP:PORT to join at start, or exit 1 (repeatable)")
    p.add_argument("--retry-join", action="append", default=[],
                   help="IP:PORT to join, retried until one join succeeds (repeatable; serf's -retry-join)")
    p.add_argument("--retry-interval", type=float, default=30.0, help="seconds between --retry-join attempts")
    p.add_argument("--retry-max", type=int, default=0, help="--retry-join attempts before exiting 1 (0: no limit)")
    p.add_argument("--profile", choices=("lan", "local", "wan"), default="lan")
    p.add_argument("--tag", action="append", default=[], type=_parse_tag, help="k=v (repeatable)")
    p.add_argument("--members-file", default=None, help="rewritten atomically with the member list as JSON")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--encrypt", default="", help="base64 gossip key (16, 24 or 32 bytes), as serf's -encrypt")
    p.add_argument("--compress-packets", action="store_true",
                   help="LZW-compress UDP packets as memberlist does (Config.compress_packets; default plain)")
    return p


#: The members file may take at most about 1 / (1 + MEMBERS_FILE_BACKOFF) of the node's CPU: after a write that
#: took d seconds of CPU, the next waits until MEMBERS_FILE_BACKOFF * d have passed.  A single change is written at
#: once; a burst (100 members joining, a starved process churning) is coalesced instead of rewriting the whole file
#: per event, which in a 100-agent bench on 2 cores took most of each node's CPU away from probing.  CPU time, not
#: wall time: on a loaded machine a 1 ms write preempted for a second made the file 9 s stale (a bench reading it
#: saw a leave 10 s late).
MEMBERS_FILE_BACKOFF = 9.0


async def _members_writer(driver: GossipDriver, events: trio.MemoryReceiveChannel[Any], path: str) -> None:
    # Each write reads the full member list, so one pending event is enough to catch up: a tiny buffer that
    # drops under bursts loses nothing.
    write_members_file(path, driver.members())
    async with events:
        async for _ev in events:
            while True:
                try:
                    events.receive_nowait()
                except trio.WouldBlock:
                    break
            started = time.thread_time()
            write_members_file(path, driver.members())
            await trio.sleep(MEMBERS_FILE_BACKOFF * (time.thread_time() - started))


async def _retry_join(driver: GossipDriver, args: argparse.Namespace) -> bool:
    """serf's -retry-join: the node stays up and tries again every --retry-interval until a join succeeds (a seed
    that is not up yet, or too busy to answer within the TCP timeout, is not fatal); False after --retry-max failed
    attempts (the node then stops, as serf does)."""
    attempt = 0
    while True:
        attempt += 1
        ok = 0
        with trio.move_on_after(driver.tcp_timeout + 5.0):
            ok = await driver.join(args.retry_join)
        if ok:
            return True
        if args.retry_max and attempt >= args.retry_max:
            log.error("could not join any of %s after %d attempts", ", ".join(args.retry_join), attempt)
            return False
        log.warning("join attempt %d failed, retrying in %g s", attempt, args.retry_interval)
        await trio.sleep(args.retry_interval)


def node_config(args: argparse.Namespace) -> Config:
    """The node's gossip configuration from its flags: the profile, with packets plain unless --compress-packets."""
    return Config.profile(args.profile, compress_packets=args.compress_packets)


async def amain(args: argparse.Namespace) -> int:
    """The node's life: bind, join, serve until SIGINT/SIGTERM, then leave gracefully."""
    bind = parse_addr(args.bind)
    advertise_host = args.advertise or bind[0]
    if is_wildcard(advertise_host):
        log.error("--bind %s is a wildcard: give --advertise IP", args.bind)
        return 2
    config = node_config(args)
    tags = dict(args.tag)
    try:
        keyring = Keyring.from_base64([args.encrypt]) if args.encrypt else None
    except KeyringError as exc:
        log.error("--encrypt: %s", exc)
        return 2

    def factory(bound: Addr) -> Machine:
        return Serf(
            config,
            name=args.name,
            addr=(advertise_host, bound[1]),
            rng=random.Random(),
            now=trio.current_time(),
            tags=tags,
            keyring=keyring,
        )

    driver = GossipDriver(factory, bind, tcp_timeout=config.tcp_timeout)
    rc = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            watch = driver.subscribe(4) if args.members_file else None
            await nursery.start(driver.run)
            if watch is not None:
                nursery.start_soon(_members_writer, driver, watch, args.members_file)

            async def initial_join() -> None:
                nonlocal rc
                ok = 0
                with trio.move_on_after(config.tcp_timeout + 5.0):
                    ok = await driver.join(args.join)
                if ok == 0:
                    log.error("could not join any of %s", ", ".join(args.join))
                    rc = 1
                    nursery.cancel_scope.cancel()

            async def retry_join() -> None:
                nonlocal rc
                if not await _retry_join(driver, args):
                    rc = 1
                    nursery.cancel_scope.cancel()

            if args.join:
                nursery.start_soon(initial_join)
            if args.retry_join:
                nursery.start_soon(retry_join)
            async for signum in signals:
                log.info("received %s: leaving", signal.Signals(signum).name)
                break
            async with trio.open_nursery() as leaving:
                # A second signal abandons the graceful leave.
                async def second_signal() -> None:
                    async for signum in signals:
                        log.warning("received %s again: not waiting for the leave", signal.Signals(signum).name)
                        leaving.cancel_scope.cancel()

                leaving.start_soon(second_signal)
                await driver.leave()
                leaving.cancel_scope.cancel()
            if watch is not None:
                write_members_file(args.members_file, driver.members())
            nursery.cancel_scope.cancel()
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    # SIGUSR1 writes every thread's Python stack to stderr (the node's log): how a bench or a test asks a node
    # that stopped answering what it is doing, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
    )
    return trio.run(amain, args)
