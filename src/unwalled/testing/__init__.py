"""Fakes shipped for users' own tests: a scripted upstream (and the mock backend).

Imported on first use, so that ``python -m unwalled.testing.upstream`` runs the
module once, as a script, and not also as part of this package.
"""

from typing import Any

__all__ = ["MockBackend", "ScriptedUpstream"]


def __getattr__(name: str) -> Any:
    if name == "MockBackend":
        from unwalled.backends.mock import MockBackend

        return MockBackend
    if name == "ScriptedUpstream":
        from unwalled.testing.upstream import ScriptedUpstream

        return ScriptedUpstream
    raise AttributeError(f"module 'unwalled.testing' has no attribute {name!r}")
