"""Secrets in an answer: API keys, tokens, private keys, high-entropy strings.

The token shapes come from ``detect-secrets`` (its plugins' patterns, taken
once when the check is built) plus shapes it lacks (newer OpenAI and Anthropic
keys, Google, Hugging Face, generic ``password = ...`` assignments). Running
the plugins themselves costs about 4 ms per kilobyte, so their patterns are
joined with ours into one RE2 alternation that reads the text once, and
high-entropy strings are scored (Shannon entropy, as detect-secrets does) on
candidate tokens only.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, mask, span
from unwalled.contracts.verdict import Violation

# detect-secrets plugins whose patterns match a token's own shape. The keyword
# and IP plugins are left out: they flag ordinary prose.
DETECT_SECRETS_PLUGINS = (
    "ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector",
    "BasicAuthDetector", "DiscordBotTokenDetector", "GitHubTokenDetector",
    "GitLabTokenDetector", "JwtTokenDetector", "MailchimpDetector", "NpmDetector",
    "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector",
    "SlackDetector", "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector",
    "TwilioKeyDetector",
)
OWN_PATTERNS: list[tuple[str, str]] = [
    ("OpenAI key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}"),
    ("Anthropic key", r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{32,}"),
    ("Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("AWS secret key", r"(?i)aws.{0,20}secret.{0,20}[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    ("private key", r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY( BLOCK)?-----"),
    ("password assignment",
     r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
     r"\s*[=:]\s*['\"]?(?P<value>[^\s'\"]{8,})"),
    ("credentials in URL", r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,64}:[^\s@/]{3,64}@"),
]
CANDIDATE = re.compile(r"[A-Za-z0-9+/=_\-]{20,}")
HEX = re.compile(r"[0-9a-fA-F]+")


def _patterns() -> tuple[Any, list[str]]:
    """Every token shape joined into one RE2 alternation, which reads the text
    once in linear time (about 40 us a kilobyte, against 700 us for running the
    patterns one by one on ``re``), and the name behind each of its groups."""
    import re2
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    shapes: list[tuple[str, str, int]] = []
    for secret_type, plugin in get_mapping_from_secret_type_to_class().items():
        if plugin.__name__ in DETECT_SECRETS_PLUGINS:
            shapes.extend((secret_type, p.pattern, p.flags)
                          for p in getattr(plugin, "denylist", ()))
    shapes.extend((name, p, 0) for name, p in OWN_PATTERNS)
    names, parts = [], []
    for i, (name, source, flags) in enumerate(shapes):
        parts.append(f"(?P<s{i}>{_for_re2(source, flags)})")
        names.append(name)
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 64 << 20
    return re2.compile("|".join(parts), options), names


def _for_re2(source: str, flags: int) -> str:
    """A pattern in RE2's dialect: no look-ahead, bounded repeats, no group names."""
    source = source.replace("(?!\\w)", "(?:\\W|$)")
    source = re.sub(r"\{(\d+),(\d{4,})\}", r"{\1,}", source)
    source = re.sub(r"\(\?P<\w+>", "(?:", source)
    scoped = "i" if flags & re.IGNORECASE else ""
    if source.startswith("(?i)"):
        scoped, source = "i", source[4:]
    return f"(?{scoped}:{source})" if scoped else f"(?:{source})"


_COMPILED: tuple[Any, list[str]] | None = None


def entropy(text: str) -> float:
    """Shannon entropy in bits per character (the measure detect-secrets uses)."""
    length = len(text)
    return -sum(n / length * math.log2(n / length) for n in Counter(text).values())


class SecretsOptions(Options):
    kind: Literal["secrets"] = "secrets"
    entropy: bool = True
    """Also flag long random-looking strings that match no known shape."""
    base64_limit: float = Field(4.5, ge=0, le=8)
    hex_limit: float = Field(3.0, ge=0, le=4)
    allow: list[str] = Field(default_factory=list)
    """Exact strings that are known not to be secrets (e.g. documented examples)."""


class SecretsCheck(Check):
    kind = "secrets"
    options: SecretsOptions

    def __init__(self, options: SecretsOptions) -> None:
        super().__init__(options)
        global _COMPILED
        if _COMPILED is None:
            _COMPILED = _patterns()
        self.pattern, self.names = _COMPILED
        self.allowed = frozenset(options.allow)

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            taken: list[tuple[int, int]] = []
            for match in self.pattern.finditer(text):
                name = self.names[int(match.lastgroup[1:])]
                self._report(name, match.group(0), match.start(), match.end(), path,
                             taken, found)
            if self.options.entropy:
                self._high_entropy(text, path, taken, found)
        return found

    def _high_entropy(self, text: str, path: str, taken: list[tuple[int, int]],
                      found: list[Violation]) -> None:
        for match in CANDIDATE.finditer(text):
            token = match.group(0)
            if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
                continue  # words and numbers alone are not keys
            is_hex = HEX.fullmatch(token) is not None
            limit = self.options.hex_limit if is_hex else self.options.base64_limit
            if entropy(token) > limit:
                self._report("high-entropy string", token, match.start(), match.end(),
                             path, taken, found)

    def _report(self, name: str, secret: str, start: int, end: int, path: str,
                taken: list[tuple[int, int]], found: list[Violation]) -> None:
        if secret in self.allowed or any(s < end and start < e for s, e in taken):
            return
        taken.append((start, end))
        where = span(start, end) if path == "text" else path
        found.append(self.violation(where, f"{name} ({mask(secret)}): an answer must "
                                           "never carry credentials"))


def build(options: SecretsOptions) -> SecretsCheck:
    return SecretsCheck(options)
