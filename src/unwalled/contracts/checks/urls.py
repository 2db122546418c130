"""URLs in an answer against a scheme and domain allow-list.

The links are the shield's (``unwalled.shield.links.find_links``): markdown
links and images (inline and reference-style), HTML attributes that load or
link, CSS ``url()``, autolinks, bare URLs and ``data:`` URLs, also after
HTML-entity and percent decoding. Hosts are compared as a browser reaches them
(``host_of``), so ``EVIL.com.`` and ``%65vil.com`` are ``evil.com``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from unwalled.contracts.checks.base import Answer, Check, Options, excerpt
from unwalled.contracts.verdict import Violation
from unwalled.shield.links import (
    Link, find_links, host_allowed, host_of, normalise_domains, scheme_of,
)


class AllowListOptions(Options):
    allow: list[str] = Field(default_factory=list)
    """Allowed domains (subdomains included)."""

    @field_validator("allow")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return normalise_domains(value)


class UrlOptions(AllowListOptions):
    kind: Literal["urls"] = "urls"
    schemes: list[str] = Field(default_factory=lambda: ["https", "http", "mailto"])
    relative: bool = True
    """Whether relative links (``/help``, ``#top``) are fine. ``allow`` empty: no
    absolute URL at all."""


class UrlCheck(Check):
    kind = "urls"
    reads_calls = True
    options: UrlOptions

    def __init__(self, options: UrlOptions) -> None:
        super().__init__(options)
        self.allowed = frozenset(options.allow)
        self.schemes = frozenset(s.lower() for s in options.schemes)

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            for link in find_links(text):
                problem = self.problem(link)
                if problem:
                    found.append(self.violation(path, problem))
        return found

    def problem(self, link: Link) -> str | None:
        scheme = scheme_of(link.url)
        if not scheme and not link.url.startswith("//"):
            return None if self.options.relative else \
                f"relative link {excerpt(link.url)} is not allowed"
        if scheme not in self.schemes:
            return (f"URL scheme {scheme or '(none)'!r} is not allowed "
                    f"({excerpt(link.url)}); allowed: {', '.join(sorted(self.schemes))}")
        if scheme == "mailto":
            host = link.url.split("@")[-1].split("?")[0].lower()
        else:
            host = host_of(link.url)
        if not host_allowed(host, self.allowed):
            allowed = ", ".join(sorted(self.allowed)) or "none"
            return (f"URL to {host or 'an unknown host'} is not on the allow-list "
                    f"({excerpt(link.url)}); allowed domains: {allowed}")
        return None


def build(options: UrlOptions) -> UrlCheck:
    return UrlCheck(options)
