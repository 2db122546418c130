"""Fakes shipped for users' own tests: a scripted upstream (and the mock backend)."""

from unwalled.backends.mock import MockBackend
from unwalled.testing.upstream import ScriptedUpstream

__all__ = ["MockBackend", "ScriptedUpstream"]
