"""Secret detection: API keys, tokens, private keys and passwords in text.

``find_secrets`` returns every finding with its kind and span. Patterns are
compiled once at import; each is anchored on a vendor's fixed prefix or on a
``name = value`` shape, so ordinary prose, hashes and identifiers stay clear.
A pattern with a ``secret`` group reports only that group (the password inside a
database URL, not the host around it), so redaction keeps the useful context.

The contract checks call the same functions, so the gateway's input shield and
the output checks agree on what a secret is.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["SecretFinding", "SECRET_KINDS", "find_secrets", "find_high_entropy",
           "has_secret", "covers", "entropy"]


@dataclass(frozen=True, slots=True)
class SecretFinding:
    kind: str
    start: int
    end: int
    value: str


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


_NOT_A_VALUE = re.compile(
    r"[*xX.\-_#]+|<[^>]*>|\$\{?\w+\}?|%\(\w+\)s|\{\{.*\}\}|\{\w*\}"
    r"|[A-Za-z_]+(?:\.[A-Za-z_]+)+|.*\(.*|[A-Za-z_][\w.]*\[")
"""Placeholders, template variables, dotted names and calls: code, not secrets."""


def _looks_random(value: str) -> bool:
    """A value that mixes letters with digits or symbols and is not a placeholder."""
    if len(set(value)) < 6 or _NOT_A_VALUE.fullmatch(value):
        return False
    has_letter = any(c.isalpha() for c in value)
    has_other = any(c.isdigit() or not c.isalnum() for c in value)
    return has_letter and has_other and entropy(value) >= 3.0


def _looks_like_password(value: str) -> bool:
    """A value given to a password: all digits, or letters with digits or
    symbols, and not a placeholder ('password: required' is prose;
    'password=hunter2' is not)."""
    if _NOT_A_VALUE.fullmatch(value):
        return False
    if value.isdigit():
        return True
    has_letter = any(c.isalpha() for c in value)
    return has_letter and any(c.isdigit() or not c.isalnum() for c in value)


_ALNUM = "A-Za-z0-9"
_PATTERNS: list[tuple[str, str, Callable[[str], bool] | None,
                     tuple[str | re.Pattern[str], ...]]] = [
    ("private_key",
     r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
     r"(?:[\s\S]{0,8000}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
     r"|[A-Za-z0-9+/=\s]*)", None, ("PRIVATE KEY",)),
    ("anthropic_key", r"\bsk-ant-(?:api|admin|oat)\d{2}-[A-Za-z0-9_-]{40,}", None,
     ("sk-ant-",)),
    ("openai_key",
     r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}(?<![-_])", None, ("sk-",)),
    ("unwalled_key", r"\buw-[A-Za-z0-9_-]{32,}", None, ("uw-",)),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", None,
     ("AKIA", "ASIA", "ABIA", "ACCA")),
    ("aws_secret_access_key",
     r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?"
     r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])", None, ("~secret",)),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,251}\b", None,
     ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    ("github_fine_grained_token", r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b",
     None, ("github_pat_",)),
    ("gitlab_token", r"\bgl(?:pat|dt|ptt|rt)-[A-Za-z0-9_-]{20,}", None,
     ("glpat-", "gldt-", "glptt-", "glrt-")),
    ("slack_token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}", None, ("xox",)),
    ("slack_webhook",
     r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}",
     None, ("hooks.slack.com",)),
    ("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,99}\b", None,
     ("sk_live_", "sk_test_", "rk_live_", "rk_test_")),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}", None, ("AIza",)),
    ("google_oauth_secret", r"\bGOCSPX-[A-Za-z0-9_-]{28}", None, ("GOCSPX-",)),
    ("twilio_api_key", r"\bSK[0-9a-f]{32}\b", None, ("SK",)),
    ("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", None, ("SG.",)),
    ("mailgun_key", r"\bkey-[0-9a-f]{32}\b", None, ("key-",)),
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b", None, ("npm_",)),
    ("pypi_token", r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", None, ("pypi-",)),
    ("huggingface_token", r"\bhf_[A-Za-z]{34}\b", None, ("hf_",)),
    ("digitalocean_token", r"\bdo[opr]_v1_[a-f0-9]{64}\b", None, ("_v1_",)),
    ("shopify_token", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b", None, ("shp",)),
    ("databricks_token", r"\bdapi[a-f0-9]{32}(?:-\d)?\b", None, ("dapi",)),
    ("square_token", r"\b(?:EAAA[A-Za-z0-9_-]{60}|sq0(?:atp|csp)-[A-Za-z0-9_-]{22,43})",
     None, ("EAAA", "sq0")),
    ("telegram_bot_token", r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])", None,
     (":AA",)),
    ("discord_bot_token",
     r"\b[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,38}\b", None,
     (re.compile(r"\.[A-Za-z\d_-]{6}\."),)),
    ("age_secret_key", r"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b",
     None, ("AGE-SECRET-KEY-1",)),
    ("azure_storage_key",
     r"AccountKey=(?P<secret>[A-Za-z0-9+/]{86}==)", None, ("AccountKey=",)),
    ("jwt",
     r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", None,
     ("eyJ",)),
    ("url_password",  # anchored on "://": a leading scheme pattern is 3x slower
     r"(?<=[a-zA-Z0-9])://[^\s:/@]{1,64}:(?P<secret>[^\s@/]{3,64})@[^\s/]+", None,
     ("://",)),
    ("mailchimp_key", r"\b[0-9a-f]{32}-us\d{1,2}\b", None, ("-us",)),
    ("artifactory_token", r"\bAKC[a-zA-Z0-9]{10,}\b", None, ("AKC",)),
    ("bearer_token",
     r"(?i:authorization:\s*bearer\s+)(?P<secret>[A-Za-z0-9._~+/-]{20,}=*)", None,
     ("~bearer",)),
    ("assigned_password",  # people pick passwords: no randomness asked of them
     r"(?i:(?<![A-Za-z])(?:password|passwd|pwd)(?![A-Za-z]))"
     r"[\"']?\s*(?::|=|=>)\s*[\"']?(?P<secret>[^\s\"'`,;]{6,128})", _looks_like_password,
     ("~pass", "~pwd")),
    ("assigned_secret",
     r"(?i:(?<![A-Za-z])(?:secret|api[_-]?key|apikey"
     r"|access[_-]?token|auth[_-]?token|client[_-]?secret|private[_-]?key"
     r"|secret[_-]?key)(?![A-Za-z]))"
     r"[\"']?\s*(?::|=|=>)\s*[\"']?(?P<secret>[^\s\"'`,;]{8,128})", _looks_random,
     ("~secret", "~key", "~token")),
]

# The last element of each entry holds literals one of which every match
# contains ("~": case-insensitive), or a short pattern where no literal will do.
# All of them go into one RE2 set, which tells in a single pass over the text
# which kinds can match at all: most text holds none, and a pattern runs only
# when its kind is present (one pass costs far less than forty substring tests).
SECRET_KINDS: tuple[str, ...] = tuple(entry[0] for entry in _PATTERNS)
_COMPILED = [(kind, re.compile(pattern), check)
             for kind, pattern, check, _hints in _PATTERNS]


def _gate(hints: tuple[str | re.Pattern[str], ...]) -> str:
    """One kind's hints as a single RE2 pattern."""
    parts = []
    for hint in hints:
        if isinstance(hint, re.Pattern):
            parts.append(hint.pattern)
        elif hint.startswith("~"):
            parts.append(f"(?i:{re.escape(hint[1:])})")
        else:
            parts.append(re.escape(hint))
    return "|".join(parts)


def _gates() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    gates = re2.Set.SearchSet(options)
    for _kind, _pattern, _check, hints in _PATTERNS:
        gates.Add(_gate(hints))
    gates.Compile()
    return gates


_GATES = _gates()


def find_secrets(text: str) -> list[SecretFinding]:
    """Every secret in ``text``, in order, without overlaps (earlier kinds win)."""
    findings: list[SecretFinding] = []
    taken: list[tuple[int, int]] = []
    present = _GATES.Match(text) or ()  # None when no kind is present
    for index in sorted(present):
        kind, pattern, check = _COMPILED[index]
        for match in pattern.finditer(text):
            group = "secret" if "secret" in pattern.groupindex else 0
            start, end = match.span(group)
            value = match.group(group)
            if check is not None and not check(value):
                continue
            if len(set(value)) < 8 and kind != "assigned_password":
                continue  # "sk-xxxxxxxx..." in documentation; passwords repeat
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            findings.append(SecretFinding(kind, start, end, value))
    return sorted(findings, key=lambda f: f.start)


_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_\-]{20,}")
_HEX = re.compile(r"[0-9a-fA-F]+")


def find_high_entropy(text: str, base64_limit: float = 4.5,
                      hex_limit: float = 3.0) -> list[SecretFinding]:
    """Long random-looking runs that match no known shape: letters mixed with
    digits, with more bits per character than the limit for their alphabet
    (the measure detect-secrets uses). Not part of ``find_secrets``: prose with
    ids and hashes trips it more often, so callers opt in."""
    findings = []
    for match in _CANDIDATE.finditer(text):
        token = match.group(0)
        if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
            continue  # words and numbers alone are not keys
        limit = hex_limit if _HEX.fullmatch(token) else base64_limit
        if entropy(token) > limit:
            findings.append(SecretFinding("high_entropy", match.start(), match.end(),
                                          token))
    return findings


def has_secret(text: str) -> bool:
    return bool(find_secrets(text))


def covers(text: str, value: str, share: float = 0.8) -> bool:
    """Whether the findings in ``text`` cover at least ``share`` of ``value`` where
    it first occurs: how a planted secret counts as found when measuring recall."""
    start = text.index(value)
    end = start + len(value)
    return any(min(end, f.end) - max(start, f.start) >= share * len(value)
               for f in find_secrets(text))
