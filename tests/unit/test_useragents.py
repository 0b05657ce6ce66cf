"""User agents of real mail clients, browsers, image proxies and scanners → Postmark's Client, OS and Platform."""

from __future__ import annotations

import pytest

from posthouse.server.domain.useragents import Platform, classify

D, M, W, U = Platform.DESKTOP, Platform.MOBILE, Platform.WEBMAIL, Platform.UNKNOWN

# (user agent, client name, client family, client company, OS name, open platform, click platform, proxy, automated)
CASES = [
    # Mail programs fetching the pixel themselves.
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
     "Apple Mail", "Apple Mail", "Apple", "Mac OS X 10.15.7", D, D, False, False),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
     "Apple Mail", "Apple Mail", "Apple", "iOS 16.5", M, M, False, False),
    ("Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
     "Apple Mail", "Apple Mail", "Apple", "iOS 17.2", M, M, False, False),
    ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "Outlook 2016", "Outlook", "Microsoft", None, D, U, False,
     False),
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13127; Pro)",
     "Outlook 2016", "Outlook", "Microsoft", "Windows 10", D, D, False, False),
    ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; Microsoft Outlook 16.0.5356; "
     "Microsoft Outlook 16.0.5356; ms-office; MSOffice 16)", "Outlook 2016", "Outlook", "Microsoft", "Windows 10", D, D,
     False, False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:102.0) Gecko/20100101 Thunderbird/102.11.0",
     "Thunderbird 102.11.0", "Thunderbird", "Mozilla", "Windows 10", D, D, False, False),
    ("Outlook-iOS/709.2226530.prod.iphone (3.24.1)", "Outlook-iOS 3.24.1", "Outlook-iOS", "Microsoft", "iOS", M, M,
     False, False),
    ("Mozilla/5.0 (Linux; Android 13; SM-S908B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36", "Chrome Mobile WebView 114.0.5735.196",
     "Chrome Mobile WebView", "Google", "Android 13", M, M, False, False),
    # Web browsers: an open in one is webmail; a click from one is on its system's platform.
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/35.0.1916.153 "
     "Safari/537.36", "Chrome 35.0.1916.153", "Chrome", "Google", "Mac OS X 10.7.5", W, D, False, False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
     "Chrome 120.0.0.0", "Chrome", "Google", "Windows 10", W, D, False, False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36 Edg/120.0.0.0", "Edge 120.0.0.0", "Edge", "Microsoft", "Windows 10", W, D, False, False),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
     "Safari/605.1.15", "Safari 17.1", "Safari", "Apple", "Mac OS X 10.15.7", W, D, False, False),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox 121.0", "Firefox", "Mozilla",
     "Linux", W, D, False, False),
    ("Mozilla/5.0 (Linux; Android 12; Pixel 6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile "
     "Safari/537.36", "Chrome Mobile 120.0.6099.43", "Chrome Mobile", "Google", "Android 12", W, M, False, False),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
     "Mobile/15E148 Safari/604.1", "Mobile Safari 17.1", "Mobile Safari", "Apple", "iOS 17.1", W, M, False, False),
    # Webmail image proxies: a read through a proxy; the OS in their user agent is not the reader's.
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
     "Gmail", "Gmail", "Google", None, W, U, True, False),
    ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
     "Yahoo Mail", "Yahoo Mail", "Yahoo", None, W, U, True, False),
    # Nobody reading: Apple Mail Privacy Protection's prefetch, crawlers, gateway scanners.
    ("Mozilla/5.0", None, None, None, None, U, U, True, True),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot 2.1", "Googlebot", None,
     None, U, U, True, True),
    ("Barracuda Sentinel (EE)", None, None, None, None, U, U, True, True),
    ("Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5", None, None, None, "Windows 7", U, U, True,
     True),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
     "HeadlessChrome 120.0.0", "HeadlessChrome", None, "Linux", U, U, True, True),
    # Unknown but possibly a person: counted, platform Unknown.
    ("curl/8.5.0", "curl 8.5.0", "curl", None, None, U, U, False, False),
    ("", None, None, None, None, U, U, False, False),
    ("SomeNewMailer/1.0", None, None, None, None, U, U, False, False),
]


@pytest.mark.parametrize(("ua", "name", "family", "company", "os_name", "opened", "clicked", "proxy", "automated"),
                         CASES, ids=[c[0][:48] or "empty" for c in CASES])
def test_user_agent_classification(ua: str, name: str | None, family: str | None, company: str | None,
                                   os_name: str | None, opened: Platform, clicked: Platform, proxy: bool,
                                   automated: bool) -> None:
    info = classify(ua)
    assert (info.client.name, info.client.family, info.client.company) == (name, family, company)
    assert info.os.name == os_name
    assert (info.open_platform, info.click_platform) == (opened, clicked)
    assert (info.proxy, info.automated) == (proxy, automated)


def test_os_family_and_company() -> None:
    info = classify("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Chrome/35.0.1916.153 Safari/537.36")
    assert (info.os.family, info.os.company) == ("Mac OS X", "Apple")
    windows = classify("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13127; Pro)")
    assert (windows.os.family, windows.os.company) == ("Windows", "Microsoft")


def test_platform_values_are_postmarks() -> None:
    assert [p.value for p in Platform] == ["WebMail", "Desktop", "Mobile", "Unknown"]
