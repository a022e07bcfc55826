"""The one version: `version`, the build tag, /v1/agent/self, the banner.

A module of its own, not agent/__init__.py: under an editable install `agent` may be imported as a namespace
package (its __init__ not run), and this must still be importable.
"""

__version__ = "0.1.0"
