"""Every reply the SMTP submission server sends, named aiosmtpd-style (`S250_OK`), and their wire form.

Code and tests use the same constants. Each reply text starts with its RFC 3463 enhanced status
code (RFC 2034 §4), except where no code applies: the greeting, HELO/EHLO and 3xx replies. Reply
text is US-ASCII (RFC 5321 §4.2): section signs and other non-ASCII characters stay out of it.
"""

from __future__ import annotations

from posthouse.server.smtp.handler import SmtpReply

__all__ = [
    "S214_HELP",
    "S220_READY_TLS",
    "S221_BYE",
    "S235_AUTH_SUCCESS",
    "S250_OK",
    "S250_RECIPIENT_OK",
    "S250_SENDER_OK",
    "S252_CANNOT_VRFY",
    "S334_EMPTY",
    "S334_PASSWORD",
    "S334_USERNAME",
    "S354_DATA",
    "S421_INTERNAL_ERROR",
    "S421_SHUTTING_DOWN",
    "S421_TOO_MANY_CONNECTIONS",
    "S421_TOO_MANY_ERRORS",
    "S421_TOO_MANY_FROM_CLIENT",
    "S451_INTERNAL_ERROR",
    "S452_TOO_MANY_RECIPIENTS",
    "S454_AUTH_TEMPORARY_FAILURE",
    "S500_BARE_CR",
    "S500_BARE_LF",
    "S500_EMPTY",
    "S500_LINE_TOO_LONG",
    "S500_UNRECOGNIZED",
    "S501_AUTH_CANCELLED",
    "S501_BAD_BASE64",
    "S501_BAD_RECIPIENT",
    "S501_BAD_SENDER",
    "S501_SYNTAX_AUTH",
    "S501_SYNTAX_DATA",
    "S501_SYNTAX_EHLO",
    "S501_SYNTAX_HELO",
    "S501_SYNTAX_MAIL",
    "S501_SYNTAX_RCPT",
    "S501_SYNTAX_STARTTLS",
    "S502_NOT_IMPLEMENTED",
    "S503_ALREADY_AUTHENTICATED",
    "S503_AUTH_IN_TRANSACTION",
    "S503_NEED_EHLO",
    "S503_NEED_HELO",
    "S503_NEED_MAIL",
    "S503_NEED_RCPT",
    "S503_NESTED_MAIL",
    "S503_NO_AUTH_HERE",
    "S503_STARTTLS_IN_TRANSACTION",
    "S503_TLS_ACTIVE",
    "S504_UNKNOWN_MECHANISM",
    "S530_AUTH_REQUIRED",
    "S535_AUTH_INVALID",
    "S538_ENCRYPTION_REQUIRED",
    "S550_BARE_LINE_ENDING",
    "S550_NUL",
    "S552_TOO_BIG",
    "S553_SMTPUTF8_REQUIRED",
    "S555_UNKNOWN_MAIL_PARAMETER",
    "S555_UNKNOWN_RCPT_PARAMETER",
    "encode_reply",
    "greeting",
    "relay_denied",
    "timeout",
]

# --- 2xx ---------------------------------------------------------------------------------------

S214_HELP = SmtpReply(214, "2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT")
S220_READY_TLS = SmtpReply(220, "2.0.0 Ready to start TLS")  # RFC 3207 §4
S221_BYE = SmtpReply(221, "2.0.0 Bye")
S235_AUTH_SUCCESS = SmtpReply(235, "2.7.0 Authentication successful")  # RFC 4954 §6
S250_OK = SmtpReply(250, "2.0.0 Ok")
S250_SENDER_OK = SmtpReply(250, "2.1.0 Ok")
S250_RECIPIENT_OK = SmtpReply(250, "2.1.5 Ok")
S252_CANNOT_VRFY = SmtpReply(252, "2.5.2 Cannot VRFY user")  # RFC 5321 §3.5.3

# --- 3xx (no enhanced codes: 334 carries base64, RFC 4954 §4) ---------------------------------

S334_EMPTY = SmtpReply(334, "")  # AUTH PLAIN without an initial response: "334 " (RFC 4616 §2)
S334_USERNAME = SmtpReply(334, "VXNlcm5hbWU6")  # base64("Username:"), AUTH LOGIN
S334_PASSWORD = SmtpReply(334, "UGFzc3dvcmQ6")  # base64("Password:"), AUTH LOGIN
S354_DATA = SmtpReply(354, "End data with <CR><LF>.<CR><LF>")

# --- 4xx ---------------------------------------------------------------------------------------

S421_INTERNAL_ERROR = SmtpReply(421, "4.3.0 Internal error, try again later")
S421_SHUTTING_DOWN = SmtpReply(421, "4.3.2 Service shutting down")
S421_TOO_MANY_CONNECTIONS = SmtpReply(421, "4.7.0 Too many connections, try again later")
S421_TOO_MANY_FROM_CLIENT = SmtpReply(421, "4.7.0 Too many connections from your address, try again later")
S421_TOO_MANY_ERRORS = SmtpReply(421, "4.7.0 Too many errors")
S451_INTERNAL_ERROR = SmtpReply(451, "4.3.0 Internal error, try again later")
S452_TOO_MANY_RECIPIENTS = SmtpReply(452, "4.5.3 Too many recipients")  # RFC 5321 §4.5.3.1.10
S454_AUTH_TEMPORARY_FAILURE = SmtpReply(454, "4.7.0 Temporary authentication failure")  # RFC 4954 §6

# --- 5xx ---------------------------------------------------------------------------------------

S500_UNRECOGNIZED = SmtpReply(500, "5.5.1 Command unrecognized")
S500_EMPTY = SmtpReply(500, "5.5.2 Empty command")
S500_LINE_TOO_LONG = SmtpReply(500, "5.5.2 Line too long")  # RFC 5321 §4.5.3.1.4
S500_BARE_LF = SmtpReply(500, "5.5.2 Bare <LF> in command not allowed")  # RFC 5321 §2.3.8
S500_BARE_CR = SmtpReply(500, "5.5.2 Bare <CR> in command not allowed")  # RFC 5321 §2.3.8
S501_SYNTAX_EHLO = SmtpReply(501, "5.5.4 Syntax: EHLO hostname")
S501_SYNTAX_HELO = SmtpReply(501, "5.5.4 Syntax: HELO hostname")
S501_SYNTAX_MAIL = SmtpReply(501, "5.5.4 Syntax: MAIL FROM:<address>")
S501_SYNTAX_RCPT = SmtpReply(501, "5.5.4 Syntax: RCPT TO:<address>")
S501_SYNTAX_DATA = SmtpReply(501, "5.5.4 Syntax: DATA")
S501_SYNTAX_STARTTLS = SmtpReply(501, "5.5.4 Syntax: STARTTLS")  # RFC 3207 §4: no parameters
S501_SYNTAX_AUTH = SmtpReply(501, "5.5.4 Syntax: AUTH mechanism [initial-response]")
S501_BAD_SENDER = SmtpReply(501, "5.1.7 Bad sender address syntax")
S501_BAD_RECIPIENT = SmtpReply(501, "5.1.3 Bad recipient address syntax")
S501_AUTH_CANCELLED = SmtpReply(501, "5.0.0 Authentication cancelled")  # RFC 4954 §4: "*"
S501_BAD_BASE64 = SmtpReply(501, "5.5.2 Cannot decode response")  # RFC 4954 §4
S502_NOT_IMPLEMENTED = SmtpReply(502, "5.5.1 Command not implemented")
S503_NEED_HELO = SmtpReply(503, "5.5.1 Error: send HELO/EHLO first")
S503_NEED_EHLO = SmtpReply(503, "5.5.1 Error: send EHLO first")
S503_NEED_MAIL = SmtpReply(503, "5.5.1 Error: need MAIL command")
S503_NEED_RCPT = SmtpReply(503, "5.5.1 Error: need RCPT command")
S503_NESTED_MAIL = SmtpReply(503, "5.5.1 Error: nested MAIL command")
S503_ALREADY_AUTHENTICATED = SmtpReply(503, "5.5.1 Error: already authenticated")
S503_AUTH_IN_TRANSACTION = SmtpReply(503, "5.5.1 Error: AUTH not allowed during a mail transaction")
S503_TLS_ACTIVE = SmtpReply(503, "5.5.1 Error: TLS already active")
S503_STARTTLS_IN_TRANSACTION = SmtpReply(503, "5.5.1 Error: STARTTLS not allowed during a mail transaction")
S504_UNKNOWN_MECHANISM = SmtpReply(504, "5.5.4 Unrecognized authentication type")
S530_AUTH_REQUIRED = SmtpReply(530, "5.7.0 Authentication required")
S503_NO_AUTH_HERE = SmtpReply(503, "5.5.1 Error: authentication is not offered on this inbound port; submit "
                                   "mail on the submission port")
S535_AUTH_INVALID = SmtpReply(535, "5.7.8 Authentication credentials invalid")
S538_ENCRYPTION_REQUIRED = SmtpReply(538, "5.7.11 Encryption required for requested authentication mechanism")
S550_BARE_LINE_ENDING = SmtpReply(
    550, "5.5.2 Bare <CR> or <LF> in message content is not allowed (RFC 5321 section 2.3.8)"
)
# RFC 2045 §2.7–2.8 and RFC 6152 §3: 7bit and 8bit data never hold NUL; only BINARYMIME (RFC
# 3030, not offered) could. A relay that strips NULs would turn "<CR><LF><NUL>.<CR><LF>" into an
# end of data downstream (SMTP smuggling).
S550_NUL = SmtpReply(550, "5.6.0 NUL character in message content is not allowed")
S552_TOO_BIG = SmtpReply(552, "5.3.4 Message size exceeds fixed maximum message size")  # RFC 1870 §6
S553_SMTPUTF8_REQUIRED = SmtpReply(553, "5.6.7 Non-ASCII address requires SMTPUTF8")  # RFC 6531 §3.5
S555_UNKNOWN_MAIL_PARAMETER = SmtpReply(555, "5.5.4 Unsupported MAIL parameter")  # RFC 5321 §4.1.1.11
S555_UNKNOWN_RCPT_PARAMETER = SmtpReply(555, "5.5.4 Unsupported RCPT parameter")


def greeting(hostname: str) -> SmtpReply:
    """The 220 greeting (RFC 5321 §4.3.1)."""
    return SmtpReply(220, f"{hostname} ESMTP Posthouse")


def relay_denied(recipient: str) -> SmtpReply:
    """RCPT on an inbound listener for an address that is not ours: relaying is refused (RFC 5321 §3.6.2)."""
    domain = recipient.rpartition("@")[2] or recipient
    return SmtpReply(550, f"5.7.1 <{recipient}>: Relay access denied: this server takes mail only for its inbound "
                          f"domains and inbound addresses, and {domain} is not one of them")


def timeout(hostname: str) -> SmtpReply:
    """What a client that went quiet hears before the server closes (RFC 5321 §4.5.3.2.7)."""
    return SmtpReply(421, f"4.4.2 {hostname} Error: timeout exceeded")


def encode_reply(reply: SmtpReply) -> bytes:
    """The reply on the wire: "250 text<CRLF>", or "250-…<CRLF>250 …<CRLF>" if the text has lines.

    Line breaks in `reply.text` become continuation lines (RFC 5321 §4.2.1) rather than raw
    CR/LF, so no text (a handler's included) can forge a second reply; non-ASCII turns into "?".
    """
    text = reply.text
    if "\n" not in text and "\r" not in text:
        return f"{reply.code} {text}\r\n".encode("ascii", "replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    last = len(lines) - 1
    wire = "".join(f"{reply.code}{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines))
    return wire.encode("ascii", "replace")
