"""User agents of opens and clicks: the email client or browser, its OS, Postmark's Platform, and proxies.

`classify(user_agent)` reads a User-Agent header with ua-parser (uap-core's rules, run by its Rust
resolver) and says what Postmark's Open and Click records show (docs/postmark-api.md §4.5, §7.3):
`Client{Name, Company, Family}`, `OS{Name, Company, Family}` and `Platform`. Names follow uap-core's
vocabulary ("Chrome 120.0.0.0", "Mac OS X 10.15.7", "Outlook 2016"), not Postmark's own database, whose
strings ("OS X 10.7 Lion") are not published; the shape and the kind of value are the same.

Platform, for an open: a mail program (Apple Mail, Outlook, Thunderbird) is `Desktop`, or `Mobile` on a
phone or tablet (iOS Mail's web view, Outlook for iOS/Android, an Android app's web view); a web browser
is `WebMail` (the message was read in a web page), as is a webmail provider's image proxy; anything
else is `Unknown`. For a click, the browser that followed the link runs on a `Desktop` or `Mobile`
system, or `Unknown` (Postmark's click platforms have no WebMail).

Two flags go beyond Postmark, which records whatever fetched its pixel:

- `proxy`: an intermediary made the request, not the reader's device, so the OS, IP and Geo are the
  intermediary's. Gmail's GoogleImageProxy and Yahoo's YahooMailProxy fetch the pixel when the
  message is displayed (Postmark's own example event shows a GoogleImageProxy fetch as "Email opened");
  such an open is still a read, attributed to the webmail (Client "Gmail", Platform WebMail).
- `automated`: no person is behind the request: Apple Mail Privacy Protection fetching every image on
  delivery (its requests carry the bare user agent `Mozilla/5.0`), link scanners of mail gateways,
  crawlers (uap-core's `Spider` devices) and headless browsers. Recording keeps such hits but does not
  count them as opens, clicks or firsts (services/tracking.py says how).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_CACHE_SIZE = 4096  # distinct user agents remembered; real traffic repeats a few hundred


class Platform(StrEnum):
    """Where an open or click happened (Postmark's `Platform`)."""

    WEBMAIL = "WebMail"
    DESKTOP = "Desktop"
    MOBILE = "Mobile"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Agent:
    """An email client, browser or operating system; None where not known."""

    name: str | None = None
    company: str | None = None
    family: str | None = None


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    client: Agent
    os: Agent
    open_platform: Platform
    click_platform: Platform
    proxy: bool = False
    automated: bool = False


_UNKNOWN = Agent()

# Mail programs as uap-core names them, and the platform their opens come from.
_MAIL_CLIENTS = {
    "Apple Mail": Platform.DESKTOP,
    "Outlook": Platform.DESKTOP,
    "Thunderbird": Platform.DESKTOP,
    "Windows Live Mail": Platform.DESKTOP,
    "Lotus Notes": Platform.DESKTOP,
    "Airmail": Platform.DESKTOP,
    "Outlook-iOS": Platform.MOBILE,
    "Outlook-Android": Platform.MOBILE,
    # An app's embedded web view: on Android a mail app's renderer (on iOS, Apple Mail, renamed below).
    "Chrome Mobile WebView": Platform.MOBILE,
}
# uap-core's names for web browsers (an open in one of them is webmail).
_BROWSERS = frozenset({
    "Chrome", "Chrome Mobile", "Chrome Mobile iOS", "Chromium", "Firefox", "Firefox Mobile", "Firefox iOS",
    "Safari", "Mobile Safari", "Edge", "Edge Mobile", "IE", "IE Mobile", "Opera", "Opera Mobile", "Opera Mini",
    "Samsung Internet", "Yandex Browser", "Vivaldi", "Brave", "UC Browser", "MiuiBrowser", "Silk", "DuckDuckGo Mobile",
    "Whale", "Pale Moon", "SeaMonkey", "Waterfox", "Konqueror", "Epiphany", "Facebook", "Instagram",
})
# Image proxies of webmail providers that fetch when the message is displayed: (client family, company).
_READING_PROXIES = {
    "GmailImageProxy": ("Gmail", "Google"),
    "YahooMailProxy": ("Yahoo Mail", "Yahoo"),
    "YandexImageResizer": ("Yandex Mail", "Yandex"),
}
# Mail-gateway link scanners and previewers that uap-core does not know as crawlers.
_SCANNERS = re.compile(r"barracuda|mimecast|proofpoint|skypeuripreview|bingpreview|trendmicro|forcepoint|ironport|"
                       r"symantec|headlesschrome|phantomjs|python-requests|go-http-client|okhttp|wget|"
                       r"linkchecker|slackbot|whatsapp|facebookexternalhit|discordbot", re.I)
# Apple Mail Privacy Protection's prefetch sends exactly this (and comes from Apple's proxy addresses).
_MAIL_PRIVACY_PROTECTION = "Mozilla/5.0"

_COMPANIES = {
    "Chrome": "Google", "Chrome Mobile": "Google", "Chrome Mobile iOS": "Google", "Chrome Mobile WebView": "Google",
    "Chromium": "Google", "Gmail": "Google", "Android": "Google", "Chrome OS": "Google",
    "Firefox": "Mozilla", "Firefox Mobile": "Mozilla", "Firefox iOS": "Mozilla", "Thunderbird": "Mozilla",
    "Safari": "Apple", "Mobile Safari": "Apple", "Mobile Safari UI/WKWebView": "Apple", "Apple Mail": "Apple",
    "Mac OS X": "Apple", "iOS": "Apple", "iPadOS": "Apple",
    "Edge": "Microsoft", "Edge Mobile": "Microsoft", "IE": "Microsoft", "IE Mobile": "Microsoft",
    "Outlook": "Microsoft", "Outlook-iOS": "Microsoft", "Outlook-Android": "Microsoft", "Windows": "Microsoft",
    "Windows Live Mail": "Microsoft", "Opera": "Opera", "Opera Mobile": "Opera", "Opera Mini": "Opera",
    "Samsung Internet": "Samsung", "Yahoo Mail": "Yahoo", "Yandex Mail": "Yandex", "Yandex Browser": "Yandex",
    "Ubuntu": "Canonical", "Lotus Notes": "IBM",
}
_MOBILE_OS = frozenset({"iOS", "iPadOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "HarmonyOS"})
_DESKTOP_OS = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "Debian", "FreeBSD",
                         "Windows NT"})
# Families whose uap-core "version" is not the program's own (Apple Mail's is its WebKit build).
_UNVERSIONED = frozenset({"Apple Mail"})
# iOS's web view with no browser token is how the iPhone and iPad Mail app fetches images.
_RENAMED = {"Mobile Safari UI/WKWebView": "Apple Mail"}


def _version(parts: Any) -> str:
    numbers = [p for p in (parts.major, parts.minor, parts.patch, getattr(parts, "patch_minor", None)) if p]
    return ".".join(numbers)


def _named(family: str, version: str) -> Agent:
    name = f"{family} {version}" if version and family not in _UNVERSIONED else family
    return Agent(name=name, company=_COMPANIES.get(family), family=family)


@functools.cache
def _parser() -> Any:
    """ua-parser's best resolver (the Rust one, from the `regex` extra), loaded on first use."""
    import ua_parser

    return ua_parser.parse


@functools.lru_cache(maxsize=_CACHE_SIZE)
def classify(user_agent: str) -> UserAgentInfo:
    """What a User-Agent header says about who opened or clicked (see the module docstring)."""
    text = user_agent.strip()
    if text == _MAIL_PRIVACY_PROTECTION:
        return UserAgentInfo(_UNKNOWN, _UNKNOWN, Platform.UNKNOWN, Platform.UNKNOWN, proxy=True, automated=True)
    result = _parser()(text) if text else None
    ua = result.user_agent if result is not None else None
    os_parts = result.os if result is not None else None
    device = result.device if result is not None else None
    family = ua.family if ua is not None else None
    family = _RENAMED.get(family, family) if family is not None else None
    if family in _READING_PROXIES:
        client_family, company = _READING_PROXIES[family]
        # The OS in a proxy's user agent is made up (GoogleImageProxy claims Windows XP): left unknown.
        return UserAgentInfo(Agent(name=client_family, company=company, family=client_family), _UNKNOWN,
                             Platform.WEBMAIL, Platform.UNKNOWN, proxy=True)
    client = _named(family, _version(ua)) if family and family != "Other" else _UNKNOWN
    os_family = os_parts.family if os_parts is not None else None
    os = _named(os_family, _version(os_parts)) if os_family and os_family != "Other" else _UNKNOWN
    if (device is not None and device.family == "Spider") or _SCANNERS.search(text):
        return UserAgentInfo(client, os, Platform.UNKNOWN, Platform.UNKNOWN, proxy=True, automated=True)
    if os_family in _MOBILE_OS:
        system = Platform.MOBILE
    elif os_family in _DESKTOP_OS:
        system = Platform.DESKTOP
    else:
        system = Platform.UNKNOWN
    if family in _MAIL_CLIENTS:
        open_platform = _MAIL_CLIENTS[family]
        if open_platform is Platform.DESKTOP and system is Platform.MOBILE:
            open_platform = Platform.MOBILE
    elif family in _BROWSERS:
        open_platform = Platform.WEBMAIL
    else:
        open_platform = system
    return UserAgentInfo(client, os, open_platform, system)
