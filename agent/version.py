"""The one version: `version`, the build tag, /v1/agent/self, the banner (stdlib only: the CLI imports it).

A module of its own, not agent/__init__.py: under an editable install `agent` may be imported as a namespace
package (its __init__ not run), and this must still be importable.
"""

import hashlib

__version__ = "0.1.0"
#: The version agents report where Consul reports its own (the build tag, `version`, /v1/agent/self): triumvir's,
#: so `consul members` shows which triumvir each node runs.
CONSUL_VERSION = __version__
#: The "git revision" half of the ``build`` tag.  Not a Consul commit: 8 hex digits that mark a triumvir build
#: (a real build may pass its own commit to ``consul.lan_tags``).
REVISION = hashlib.sha256(b"triumvir").hexdigest()[:8]
