"""agent/gossip/lean.py: the bare gossip node starts without OpenSSL, idna or ctypes.util (and runs no ldconfig), and a
deferred module still works in full the moment something uses it.  Each probe is a fresh interpreter: the test
process has long imported ssl."""

from __future__ import annotations

import subprocess
import sys


def _probe(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_gossip_node_imports_without_loading_openssl() -> None:
    _probe(
        "import sys\n"
        "from agent.gossip.lean import defer\n"
        "assert defer() == ['ssl', 'hmac', 'idna', 'ctypes.util'], 'nothing deferred'\n"
        "spawned = []\n"
        "sys.addaudithook(lambda event, args: event.startswith(('subprocess.', 'os.exec', 'os.posix_spawn'))"
        " and spawned.append(event))\n"
        "import agent.gossip.cli, trio\n"
        "loaded = [m for m in ('_ssl', '_hashlib', 'idna.core', '_bz2', '_lzma') if m in sys.modules]\n"
        "assert not loaded, f'loaded at start: {loaded}'\n"
        "assert not spawned, f'a process started at import: {spawned}'\n"
        "from trio._core._thread_cache import set_os_thread_name\n"
        "assert set_os_thread_name is not None, 'trio lost its thread names'\n"
    )


def test_the_find_library_stand_in_answers_as_the_real_one() -> None:
    _probe(
        "import sys\n"
        "from agent.gossip.lean import defer, find_library, DeferredModule\n"
        "defer(('ctypes.util',))\n"
        "import ctypes.util\n"
        "assert find_library('pthread') == 'libpthread.so.0' and isinstance(ctypes.util, DeferredModule)\n"
        "libc = ctypes.util.find_library('c')\n"  # not ours to answer: loads the real module
        "real = sys.modules['ctypes.util']\n"
        "assert not isinstance(real, DeferredModule) and libc == real.find_library('c')\n"
        "assert real.find_library('pthread') == find_library('pthread')\n"
        "assert ctypes.util is real\n"
    )


def test_a_deferred_module_loads_on_first_use_and_is_the_real_one() -> None:
    _probe(
        "import sys\n"
        "from agent.gossip.lean import defer, DeferredModule\n"
        "defer(('hmac', 'ssl'))\n"
        "import hmac, ssl\n"
        "assert isinstance(hmac, DeferredModule) and '_hashlib' not in sys.modules\n"
        "from hmac import compare_digest\n"  # an attribute: loads it
        "assert compare_digest(b'a', b'a') and '_hashlib' in sys.modules\n"
        "assert hmac.digest(b'k', b'm', 'sha256') == sys.modules['hmac'].digest(b'k', b'm', 'sha256')\n"
        "ctx = ssl.create_default_context()\n"
        "assert isinstance(ctx, sys.modules['ssl'].SSLContext) and '_ssl' in sys.modules\n"
        "assert not isinstance(sys.modules['ssl'], DeferredModule), 'the real module replaced the stand-in'\n"
    )


def test_defer_leaves_an_imported_module_alone() -> None:
    _probe(
        "import ssl\n"
        "from agent.gossip.lean import defer\n"
        "assert defer(('ssl',)) == []\n"
    )
