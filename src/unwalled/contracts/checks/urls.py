"""URLs in an answer, found in every form, and a scheme and domain allow-list.

``find_links`` sees markdown links and images (inline, reference-style and
their definitions), HTML attributes that load or link (``src``, ``href``,
``srcset``, ``action``, ``poster``, ``background``, ``data``), autolinks in
angle brackets, bare URLs and ``data:`` URLs. Hosts are compared after
lower-casing, percent-decoding and IDNA decoding, so ``EVIL.com.`` and
``%65vil.com`` are ``evil.com``; a backslash counts as a slash, as browsers do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from unwalled.contracts.checks.base import Answer, Check, Options, excerpt, span
from unwalled.contracts.verdict import Violation

_URL = r"(?:[a-zA-Z][a-zA-Z0-9+.-]{1,20}:|//)[^\s<>\"'`)\]]+"
_MD_TARGET = r"\(\s*<?(?P<url>[^\s)>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
PATTERNS: list[tuple[str, re.Pattern[str] | None]] = [
    ("image", re.compile(r"!\[[^\]]{0,1000}\]\s*" + _MD_TARGET)),
    ("link", re.compile(r"(?<!!)\[[^\]]{0,1000}\]\s*" + _MD_TARGET)),
    ("definition", re.compile(
        r"^[ \t]{0,3}\[(?P<label>[^\]]{1,999})\]:[ \t]*<?(?P<url>[^\s>]+)>?", re.M)),
    ("html", re.compile(
        r"<(?P<tag>[a-zA-Z][a-zA-Z0-9-]*)\b[^>]*?\b(?P<attr>src|href|srcset|action|"
        r"poster|background|data|formaction)\s*=\s*(?:\"(?P<u1>[^\"]*)\"|'(?P<u2>[^']*)'"
        r"|(?P<u3>[^\s>]+))", re.I)),
    ("autolink", re.compile(r"<(?P<url>" + _URL + r")>")),
    ("bare", None),  # BARE, below: on RE2
]
def _bare() -> Any:
    """Bare URLs on RE2 (linear time; the ``re`` form was the costliest pattern).
    RE2 has no look-behind, so ``find_links`` drops a match glued to a word."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = False
    return re2.compile(r"(?P<url>(?:https?|ftp|data|file|javascript):[^\s<>\"'`)\]]+"
                       r"|www\.[^\s<>\"'`)\]]+)", options)


BARE = _bare()
# What each pattern needs to find anything; a pattern whose gate is absent from
# the text is not run (most answers have no markdown, no HTML, or no URL at all).
GATES = {"image": "](", "link": "](", "definition": "]:", "html": "<", "autolink": "<"}
IMAGE_TAGS = frozenset({"img", "image", "source", "video", "audio", "iframe", "embed",
                        "object", "input", "track", "picture", "body", "table", "td"})


@dataclass(slots=True)
class Link:
    url: str
    kind: str
    """``image`` (loaded without a click), ``link`` (needs a click) or ``bare``."""
    start: int
    end: int

    @property
    def scheme(self) -> str:
        return scheme_of(self.url)

    @property
    def host(self) -> str:
        return host_of(self.url)


def find_links(text: str) -> list[Link]:
    """Every URL in the text, with whether a renderer would load it by itself."""
    links: list[Link] = []
    taken: list[tuple[int, int]] = []
    references = _reference_uses(text) if "]:" in text else {}
    for kind, pattern in PATTERNS:
        gate = GATES.get(kind)
        if gate is not None and gate not in text:
            continue
        if kind == "bare":
            pattern = BARE
        for match in pattern.finditer(text):
            start = match.start()
            if any(s <= start < e for s, e in taken):
                continue
            if kind == "bare" and start and (text[start - 1].isalnum()
                                             or text[start - 1] in "_/"):
                continue
            links.extend(_links_of(kind, match, references))
            taken.append((match.start(), match.end()))
    return links


def _links_of(kind: str, match: re.Match[str], references: dict[str, str]
              ) -> Iterator[Link]:
    start, end = match.start(), match.end()
    if kind == "html":
        url = match.group("u1") or match.group("u2") or match.group("u3") or ""
        tag, attr = match.group("tag").lower(), match.group("attr").lower()
        loads = tag in IMAGE_TAGS or attr in ("src", "srcset", "background", "poster")
        urls = [u.strip().split(" ")[0] for u in url.split(",")] if attr == "srcset" \
            else [url]
        for one in urls:
            yield Link(one, "image" if loads else "link", start, end)
        return
    url = match.group("url")
    if kind == "definition":
        used_as = references.get(match.group("label").strip().lower(), "link")
        yield Link(url, used_as, start, end)
        return
    yield Link(url, kind if kind in ("image", "link") else "bare", start, end)


def _reference_uses(text: str) -> dict[str, str]:
    """Reference labels and whether any use of them is an image."""
    uses: dict[str, str] = {}
    for match in re.finditer(r"(!?)\[([^\]]{0,1000})\](?:\s?\[([^\]]{0,999})\])?", text):
        label = (match.group(3) or match.group(2)).strip().lower()
        if match.group(1):
            uses[label] = "image"
        else:
            uses.setdefault(label, "link")
    return uses


def scheme_of(url: str) -> str:
    url = url.strip()
    if url.startswith("//") or url.lower().startswith("www."):
        return "https"
    head = url.split(":", 1)
    return head[0].lower() if len(head) == 2 and re.fullmatch(
        r"[a-zA-Z][a-zA-Z0-9+.-]*", head[0]) else ""


def host_of(url: str) -> str:
    url = url.strip().replace("\\", "/")
    if url.lower().startswith("www."):
        url = "https://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    host = unquote(host).rstrip(".").lower()
    try:
        return host.encode("ascii").decode("idna") if "xn--" in host else host
    except UnicodeError:
        return host


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether ``host`` is an allowed domain or a subdomain of one."""
    if not host:
        return False
    parts = host.split(".")
    return any(".".join(parts[i:]) in allowed for i in range(len(parts)))


def normalise_domains(domains: list[str]) -> list[str]:
    return [d.strip().lower().rstrip(".").removeprefix("*.") for d in domains]


class AllowListOptions(Options):
    allow: list[str] = Field(default_factory=list)
    """Allowed domains (subdomains included)."""

    @field_validator("allow")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return normalise_domains(value)


class LinkCheck(Check):
    """A check that judges each link of the answer against a domain allow-list."""

    options: AllowListOptions

    def __init__(self, options: AllowListOptions) -> None:
        super().__init__(options)
        self.allowed = frozenset(options.allow)

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            for link in find_links(text):
                problem = self.problem(link)
                if problem:
                    where = span(link.start, link.end) if path == "text" else path
                    found.append(self.violation(where, problem))
        return found

    def problem(self, link: Link) -> str | None:
        raise NotImplementedError


class UrlOptions(AllowListOptions):
    kind: Literal["urls"] = "urls"
    schemes: list[str] = Field(default_factory=lambda: ["https", "http", "mailto"])
    relative: bool = True
    """Whether relative links (``/help``, ``#top``) are fine. ``allow`` empty: no
    absolute URL at all."""


class UrlCheck(LinkCheck):
    kind = "urls"
    options: UrlOptions

    def __init__(self, options: UrlOptions) -> None:
        super().__init__(options)
        self.schemes = frozenset(s.lower() for s in options.schemes)

    def problem(self, link: Link) -> str | None:
        scheme = link.scheme
        if not scheme and not link.url.startswith("//"):
            return None if self.options.relative else \
                f"relative link {excerpt(link.url)} is not allowed"
        if scheme not in self.schemes:
            return (f"URL scheme {scheme or '(none)'!r} is not allowed "
                    f"({excerpt(link.url)}); allowed: {', '.join(sorted(self.schemes))}")
        if scheme == "mailto":
            host = link.url.split("@")[-1].split("?")[0].lower()
        else:
            host = link.host
        if not host_allowed(host, self.allowed):
            allowed = ", ".join(sorted(self.allowed)) or "none"
            return (f"URL to {host or 'an unknown host'} is not on the allow-list "
                    f"({excerpt(link.url)}); allowed domains: {allowed}")
        return None


def build(options: UrlOptions) -> UrlCheck:
    return UrlCheck(options)
