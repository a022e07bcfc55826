"""Standard modules the bare gossip node never uses, loaded only if something touches them.

trio imports ``ssl`` (for ``trio.SSLStream``) and ``hmac`` (for DTLS cookies) when it is imported; between them they
load OpenSSL (libssl, libcrypto and its tables): about 5 MiB of RSS in every ``python -m agent.gossip`` process,
which speaks plaintext or AES-GCM through ``cryptography`` (itself imported on first use, protocol/keyring.py) and
never TLS.  ``defer`` puts a stand-in module in ``sys.modules`` that imports the real one on the first attribute
access (``ssl.SSLContext``, ``from hmac import digest``) and from then on behaves as it.  A plain ``import ssl``
does not load it: that is the point, and why ``importlib.util.LazyLoader`` does not serve here (on Python 3.11
the import statement reads the module's ``__spec__`` and so loads a lazily-loaded module at once).

``idna`` (trio's encoder of non-ASCII host names) is deferred the same way: the node's addresses are IPs.

``ctypes.util`` is stood in for too, with one function of its own: trio names its worker threads through
``pthread_setname_np`` and, at import, asks ``ctypes.util.find_library("pthread")`` where that library is.  On Linux
that call runs ``ldconfig -p`` (a fork and exec in every process) and the module imports shutil with bz2 and lzma
(their shared libraries mapped); here the library is opened by its soname, which is what the dynamic linker does
with the name ldconfig would have returned, and any other name (or a system without that soname) goes to the real
module.  Measured with ``bench/gossip_vs_serf.py``'s agents in mind: 100 of them start on two cores at once.

Only the bare node's entry point calls this, before it imports trio; the full agent imports what it imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

#: What ``python -m agent.gossip`` defers: imported by trio at start, used only by its TLS and DTLS streams (ssl,
#: hmac), its name resolution of non-ASCII host names (idna) and its thread naming (ctypes.util, see above).
UNUSED_BY_GOSSIP = ("ssl", "hmac", "idna", "ctypes.util")
#: find_library("pthread")'s answer wherever glibc provides it (2.34 and later keep it as a stub of libc).
PTHREAD_SONAME = "libpthread.so.0"


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


def find_library(name: str) -> str | None:
    """``ctypes.util.find_library`` for the stand-in: "pthread" by opening its soname, anything else (or no such
    soname) by the real module, which the stand-in then becomes."""
    if name == "pthread":
        import ctypes

        try:
            ctypes.CDLL(PTHREAD_SONAME)
        except OSError:
            pass
        else:
            return PTHREAD_SONAME
    module = sys.modules["ctypes.util"]
    if isinstance(module, DeferredModule):
        return DeferredModule.__getattr__(module, "find_library")(name)
    return module.find_library(name)


def defer(names: tuple[str, ...] = UNUSED_BY_GOSSIP) -> list[str]:
    """Stand in for each of `names` not yet imported; returns those deferred."""
    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)  # a submodule's: imports its package
        if spec is None:
            continue
        stand_in = DeferredModule(name)
        stand_in.__spec__ = spec  # the import statement reads it to see whether the module is still initialising
        if name == "ctypes.util":
            stand_in.find_library = find_library  # type: ignore[attr-defined]
        package, _, child = name.rpartition(".")
        if package:
            setattr(sys.modules[package], child, stand_in)  # as the import system does once it loaded a submodule
        sys.modules[name] = stand_in
        deferred.append(name)
    return deferred
