"""Standard modules the bare gossip node never uses, loaded only if something touches them.

trio imports ``ssl`` (for ``trio.SSLStream``) and ``hmac`` (for DTLS cookies) when it is imported; between them they
load OpenSSL (libssl, libcrypto and its tables): about 5 MiB of RSS in every ``python -m agent.gossip`` process,
which speaks plaintext or AES-GCM through ``cryptography`` (itself imported on first use, protocol/keyring.py) and
never TLS.  ``defer`` puts a stand-in module in ``sys.modules`` that imports the real one on the first attribute
access (``ssl.SSLContext``, ``from hmac import digest``) and from then on behaves as it.  A plain ``import ssl``
does not load it: that is the point, and why ``importlib.util.LazyLoader`` does not serve here (on Python 3.11
the import statement reads the module's ``__spec__`` and so loads a lazily-loaded module at once).

Only the bare node's entry point calls this, before it imports trio; the full agent imports what it imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

#: What ``python -m agent.gossip`` defers: imported by trio at start, used only by its TLS and DTLS streams.
UNUSED_BY_GOSSIP = ("ssl", "hmac")


class DeferredModule(types.ModuleType):
    """A module that imports itself for real on the first attribute it lacks, then takes on its namespace."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__["__name__"]
        real = sys.modules.get(name)
        if real is self or real is None:
            sys.modules.pop(name, None)
            try:
                real = importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, self)
                raise
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def defer(names: tuple[str, ...] = UNUSED_BY_GOSSIP) -> list[str]:
    """Stand in for each of `names` not yet imported; returns those deferred."""
    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stand_in = DeferredModule(name)
        stand_in.__spec__ = spec  # the import statement reads it to see whether the module is still initialising
        sys.modules[name] = stand_in
        deferred.append(name)
    return deferred
