"""The SMTP session takes mail without AUTH for the return-path domain and for sending domains' own Return-Path
domains (issue 14), and for nothing else: the sans-I/O session driven as the server drives it."""

from __future__ import annotations

from posthouse.server.smtp import replies as r
from posthouse.server.smtp.handler import INBOUND_BOUNCE
from posthouse.server.smtp.session import SessionPolicy
from unit.test_smtp_session import Driver

CUSTOM = {"pm-bounces.shop.example.com"}
POLICY = SessionPolicy("mx.test", return_domain="bounces.posthouse-mail.net",
                       other_return_domain=lambda domain: domain in CUSTOM)


def bounce_client() -> Driver:
    driver = Driver(policy=POLICY, tls=False)
    driver.feed("EHLO mx.example.net\r\n")
    assert driver.say("MAIL FROM:<>\r\n") == "250 2.1.0 Ok"
    return driver


def test_bounces_to_our_domain_and_to_custom_return_path_domains_need_no_auth() -> None:
    driver = bounce_client()
    assert driver.say("RCPT TO:<pm_bounces+1abc@bounces.posthouse-mail.net>\r\n") == "250 2.1.5 Ok"
    assert driver.say("RCPT TO:<pm_bounces+2abc@PM-BOUNCES.shop.example.com.>\r\n") == "250 2.1.5 Ok"
    assert driver.say("RCPT TO:<someone@shop.example.com>\r\n") == str(r.S530_AUTH_REQUIRED)  # the domain, not below
    assert driver.say("RCPT TO:<pm_bounces+3abc@pm-bounces.other.example.com>\r\n") == str(r.S530_AUTH_REQUIRED)
    driver.feed("DATA\r\n")
    driver.feed("Subject: bounce\r\n\r\nreport\r\n.\r\n")
    [delivered] = driver.deliveries
    assert delivered.identity is INBOUND_BOUNCE
    assert delivered.recipients == ("pm_bounces+1abc@bounces.posthouse-mail.net",
                                    "pm_bounces+2abc@PM-BOUNCES.shop.example.com.")


def test_without_a_predicate_only_our_domain_takes_bounces() -> None:
    driver = Driver(policy=SessionPolicy("mx.test", return_domain="bounces.posthouse-mail.net"), tls=False)
    driver.feed("EHLO mx.example.net\r\nMAIL FROM:<>\r\n")
    assert driver.say("RCPT TO:<pm_bounces+2abc@pm-bounces.shop.example.com>\r\n") == str(r.S530_AUTH_REQUIRED)
