"""py-consul's test fixture, for triumvir: copied over the root conftest.py of py-consul's extracted sdist.

py-consul's own root conftest starts `hashicorp/consul:<version>` in Docker, one container per test, and offers
`consul_instance` / `consul_port` (and `acl_consul_instance`); its tests/conftest.py builds `consul_obj` as
`Consul(port=port)`, i.e. on 127.0.0.1.  This file offers the same fixtures over a fresh `python -m agent -dev` on
127.0.0.1 per test (so every test starts from an empty store, as with a fresh container), ACLs on for
`acl_consul_instance` as py-consul configures them, and nothing else: the tests and their helpers run
unchanged.  tests/test_pyconsul_suite.py puts this repository's tests directory on PYTHONPATH so `dev_agent`
and `procs` import.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dev_agent import start_dev_agent
from procs import wait_for

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])

#: py-consul's own ``base_config`` for its Consul container (its conftest): script checks on, no DNS, HTTPS or
#: gRPC TLS port, raft_multiplier 1.  The ACL fixture adds its block to it, as py-consul's does.
BASE_CONFIG = {
    "ports": {"https": -1, "dns": -1, "grpc_tls": -1},
    "performance": {"raft_multiplier": 1},
    "enable_script_checks": True,
}


def _config_file(workdir: str, config: dict) -> list[str]:
    path = Path(workdir) / "py-consul.json"
    path.write_text(json.dumps(config))
    return ["-config-file", str(path)]


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token() -> None:
    os.environ.pop("CONSUL_HTTP_TOKEN", None)


#: Consul's own HTTP port. Inside py-consul's container the agent listens there, and its HTTP-check tests point a
#: check at ``http://127.0.0.1:8500`` expecting the agent itself; the fixture takes it when it is free.
CONSUL_HTTP_PORT = 8500


@contextlib.contextmanager
def _consul_port_if_free() -> Iterator[int | None]:
    """8500 while the block runs, when no other harness holds it (two py-consul runs of one pytest session can
    start at once: a lock file decides between them, and the probe only sees other processes); else None."""
    with open(Path(tempfile.gettempdir()) / f"triumvir-pyconsul-{CONSUL_HTTP_PORT}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the agent binds: the previous test's
            try:  # agent leaves connections in TIME_WAIT on 8500, which must not send this one elsewhere
                probe.bind(("127.0.0.1", CONSUL_HTTP_PORT))
                free = True
            except OSError:
                free = False
        yield CONSUL_HTTP_PORT if free else None


@pytest.fixture
def consul_instance() -> Iterator[ConsulInstance]:
    with (
        tempfile.TemporaryDirectory(prefix="pyconsul-agent-") as workdir,
        _consul_port_if_free() as http_port,
        start_dev_agent(Path(workdir), "127.0.0.1", *_config_file(workdir, BASE_CONFIG), http_port=http_port) as addr,
    ):
        port = int(addr.rsplit(":", 1)[1])
        version = requests.get(f"http://{addr}/v1/agent/self", timeout=10).json()["Config"]["Version"].strip()
        yield ConsulInstance(None, port, version)


@pytest.fixture
def acl_consul_instance() -> Iterator[tuple[ConsulInstance, str]]:
    """py-consul's ACL fixture: ACLs on (default policy allow), ``initial_management`` a fresh ``uuid4().hex``
    (not a UUID, as py-consul's), ``primary_datacenter = "dc1"``, over `BASE_CONFIG`; yields (instance, that token)."""
    token = uuid.uuid4().hex
    config = {**BASE_CONFIG, "primary_datacenter": "dc1",
              "acl": {"enabled": True, "tokens": {"initial_management": token}}}
    with tempfile.TemporaryDirectory(prefix="pyconsul-acl-agent-") as workdir, start_dev_agent(
        Path(workdir), "127.0.0.1", *_config_file(workdir, config)
    ) as addr:
        port = int(addr.rsplit(":", 1)[1])
        # the leader initialises ACLs in its first rounds: wait until the management token resolves
        wait_for(lambda: requests.get(f"http://{addr}/v1/acl/token/self", headers={"X-Consul-Token": token},
                                      timeout=10).status_code == 200,
                 timeout=30, what="the initial management token")  # fmt: skip
        version = requests.get(f"http://{addr}/v1/agent/self", timeout=10).json()["Config"]["Version"].strip()
        yield ConsulInstance(None, port, version), token


@pytest.fixture
def consul_port(consul_instance: ConsulInstance) -> tuple[int, str]:
    return consul_instance.port, consul_instance.version
