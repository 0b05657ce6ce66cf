"""The SDK's models: `Email` and `TemplateEmail` to send, and the wire Structs every answer decodes into
(snake_case in Python, Postmark's PascalCase on the wire; the shapes live in `posthouse.wire`)."""

from __future__ import annotations

import base64
import mimetypes

from posthouse import wire

__all__ = ["Email", "TemplateEmail", "encode_attachment"]


class Email(wire.EmailRequest):
    """One message: what `client.outbound.send`, `SMTPTransport.send` and `MemoryTransport.send` take.

    The fields are Postmark's `POST /email` fields in snake_case (docs/postmark-api.md §2.1); `sender` is
    `From`. Addresses are strings; several are separated by commas (`to="a@x.com, B <b@y.com>"`).
    Attachments carry base64 content: build them with `encode_attachment`. `send_at` (ISO 8601) asks
    Posthouse to deliver later.

        Email(sender="app@example.com", to="user@example.com", subject="Hi", text_body="Hello",
              metadata={"user_id": "12345"})
    """


class TemplateEmail(wire.TemplateEmailRequest):
    """One message rendered from a stored template: what `client.outbound.send_with_template` and
    `send_batch_with_templates` take (docs/postmark-api.md §2.3).

    The fields of `Email` without `subject`, `html_body` and `text_body` (the template has them), plus
    `template_id` or `template_alias`, the `template_model` its placeholders are filled from, and
    `inline_css` (true when not given).

        TemplateEmail(sender="app@example.com", to="user@example.com", template_alias="welcome",
                      template_model={"name": "Ann"})
    """


def encode_attachment(
    name: str, content: bytes, content_type: str | None = None, *, content_id: str | None = None
) -> wire.Attachment:
    """An attachment from raw bytes; the type is guessed from `name` when not given.

    With `content_id` the file is inline: the HTML body refers to it as `cid:<content_id>`.
    """
    guessed = mimetypes.guess_type(name)[0]
    return wire.Attachment(
        name=name,
        content=base64.b64encode(content).decode("ascii"),
        content_type=content_type or guessed or "application/octet-stream",
        content_id=None if content_id is None else f"cid:{content_id.removeprefix('cid:').strip('<>')}",
    )
