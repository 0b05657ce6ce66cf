"""A Django email backend that sends through Posthouse's API, up to 500 messages per `/email/batch` call.

    EMAIL_BACKEND = "posthouse.django.EmailBackend"
    POSTHOUSE_SERVER_TOKEN = "..."                   # or the environment variable of the same name
    POSTHOUSE_BASE_URL = "http://127.0.0.1:8080"     # or the environment variable of the same name

Django's `EmailMessage` and `EmailMultiAlternatives` map onto `posthouse.Email` field by field (never
through the MIME that `message()` builds): to/cc/bcc/reply_to, the body as text or, with
`content_subtype = "html"`, as HTML, a `text/html` alternative, `extra_headers`, and attachments, as
(filename, content, mimetype) or as MIMEBase parts (a Content-ID makes one inline). Optional attributes
set on a message are passed on: `tag`, `metadata`, `message_stream`, `track_opens`, `track_links`.

With `fail_silently`, API and network errors and refused messages are logged and counted out instead of
raised; a missing setting raises `ImproperlyConfigured` regardless.

Typing: Django ships no type information and django-stubs is not a dependency, so its imports carry
`type: ignore[import-untyped]` and the backend class `type: ignore[misc]` (it subclasses an untyped base).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from email.message import Message
from email.mime.base import MIMEBase
from typing import Any

from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.mail.backends.base import BaseEmailBackend  # type: ignore[import-untyped]

from posthouse import wire
from posthouse.client.clients import SyncServerClient
from posthouse.client.config import BASE_URL_ENV, SERVER_TOKEN
from posthouse.client.errors import InvalidRequestError, PosthouseError
from posthouse.client.models import Email, encode_attachment
from posthouse.client.protocol import error_from_result

__all__ = ["BATCH_SIZE", "EmailBackend", "email_from_django"]

BATCH_SIZE = 500  # Postmark's limit per /email/batch (docs/postmark-api.md §2.2)
logger = logging.getLogger("posthouse.django")


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """Sends Django mail through Posthouse's API; see the module docstring for settings and mapping."""

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        server_token: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.server_token = server_token or getattr(settings, "POSTHOUSE_SERVER_TOKEN", None)
        self.server_token = self.server_token or os.environ.get(SERVER_TOKEN.env)
        self.base_url = base_url or getattr(settings, "POSTHOUSE_BASE_URL", None) or os.environ.get(BASE_URL_ENV)
        if not self.server_token or not self.base_url:
            missing = "POSTHOUSE_SERVER_TOKEN" if not self.server_token else "POSTHOUSE_BASE_URL"
            raise ImproperlyConfigured(f"Set {missing} in the settings or the environment for {__name__}.")
        self.timeout = timeout if timeout is not None else getattr(settings, "POSTHOUSE_TIMEOUT", 10.0)
        self.retries = retries if retries is not None else getattr(settings, "POSTHOUSE_RETRIES", 3)
        self.client: SyncServerClient | None = None

    def open(self) -> bool:
        """Make the client if there is none; True when this call made it (Django's contract)."""
        if self.client is not None:
            return False
        self.client = SyncServerClient(
            self.server_token, base_url=self.base_url, timeout=self.timeout, retries=self.retries
        )
        return True

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send the messages in batches of 500; the number the server accepted."""
        if not email_messages:
            return 0
        emails = [email_from_django(message) for message in email_messages]
        created = self.open()
        assert self.client is not None
        accepted = 0
        refused: list[wire.SendResponse] = []
        try:
            for start in range(0, len(emails), BATCH_SIZE):
                results = self.client.outbound.send_batch(emails[start : start + BATCH_SIZE])
                accepted += sum(1 for result in results if result.error_code == 0)
                refused.extend(result for result in results if result.error_code != 0)
            if refused:
                raise _refusal(refused, len(emails))
        except PosthouseError as exc:
            if not self.fail_silently:
                raise
            # fail_silently is the caller's choice; the failure still leaves a trace.
            logger.warning("posthouse: %d of %d messages not sent: %s", len(emails) - accepted, len(emails), exc)
        finally:
            if created:
                self.close()
        return accepted


def _refusal(refused: list[wire.SendResponse], total: int) -> PosthouseError:
    """One error for the refused messages of a batch: the first one's type, every one's reason."""
    error = error_from_result(refused[0])
    if len(refused) > 1:
        reasons = "; ".join(f"[{r.error_code}] {r.message}" for r in refused)
        error = InvalidRequestError(
            f"{len(refused)} of {total} messages refused: {reasons}", error_code=refused[0].error_code, http_status=200
        )
    return error


def email_from_django(message: Any) -> Email:
    """A Django `EmailMessage` (or `EmailMultiAlternatives`) as a `posthouse.Email`."""
    text_body: str | None = None
    html_body: str | None = None
    if getattr(message, "content_subtype", "plain") == "html":
        html_body = message.body
    else:
        text_body = message.body
    for content, mimetype in getattr(message, "alternatives", None) or []:
        body = content.decode() if isinstance(content, bytes) else str(content)
        if mimetype == "text/html" and html_body is None:
            html_body = body
        elif mimetype == "text/plain" and text_body is None:
            text_body = body
        else:
            # Postmark's message has one text and one HTML body; any other alternative cannot travel.
            logger.warning("posthouse.django: dropped an alternative of type %s (one text and one HTML only)", mimetype)
    sender = message.from_email
    reply_to = ", ".join(message.reply_to) or None
    headers: list[wire.Header] = []
    for name, value in (message.extra_headers or {}).items():
        if name.lower() == "from":
            sender = str(value)
        elif name.lower() == "reply-to":
            reply_to = str(value)
        else:
            headers.append(wire.Header(name=name, value=str(value)))
    return Email(
        sender=sender,
        to=", ".join(message.to) or None,
        cc=", ".join(message.cc) or None,
        bcc=", ".join(message.bcc) or None,
        reply_to=reply_to,
        subject=message.subject,
        text_body=text_body,
        html_body=html_body,
        headers=headers or None,
        attachments=[_attachment(item) for item in message.attachments] or None,
        tag=getattr(message, "tag", None),
        metadata=getattr(message, "metadata", None),
        message_stream=getattr(message, "message_stream", None),
        track_opens=getattr(message, "track_opens", None),
        track_links=getattr(message, "track_links", None),
    )


def _attachment(item: Any) -> wire.Attachment:
    if isinstance(item, MIMEBase):
        payload = item.get_payload(decode=True)
        if not isinstance(payload, bytes):  # a message/rfc822 or multipart part: its serialised form
            parts = item.get_payload()
            payload = b"".join(part.as_bytes() if isinstance(part, Message) else str(part).encode() for part in parts)
        content_id = item.get("Content-ID")
        return encode_attachment(
            item.get_filename() or "attachment",
            payload,
            item.get_content_type(),
            content_id=str(content_id).strip().strip("<>") if content_id else None,
        )
    filename, content, mimetype = item
    if hasattr(content, "as_bytes"):  # message/rfc822 attached as a message object
        content = content.as_bytes()
    data = content.encode() if isinstance(content, str) else bytes(content)
    return encode_attachment(filename or "attachment", data, mimetype)
