"""The sender signature routes (account token): list, get, create, edit, delete, resend the confirmation,
and the deprecated SPF check and DKIM renewal (docs/postmark-api.md §8.4); and the two public pages of a
confirmation link (`GET` asks, `POST` confirms: a link a mail scanner fetches confirms nothing).

The confirmation pages are for a person in a browser, so they answer HTML, not Postmark's JSON envelope."""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse, Response

from posthouse import wire
from posthouse.server.api.access import ACCOUNT, PUBLIC, AccountCall, PublicCall
from posthouse.server.api.payloads import decode, json_response, read_required_body
from posthouse.server.api.routing import Query, Route, parse_id
from posthouse.server.errors import NotFoundError

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto; line-height: 1.5">
<h1>{title}</h1>{body}</body></html>"""
# The token is in the URL: no referrer leaves the page, and nothing caches it.
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}


def _page(title: str, body: str, status: int = 200) -> Response:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status, headers=_HEADERS)


_NO_LINK = ("<p>This confirmation link is not valid: it was already used, a newer one was sent, or the sender "
            "signature was removed.</p>")


def _sender_id(value: str) -> int:
    number = parse_id(value)
    if number is None:
        raise NotFoundError(501, f"Sender Signature '{value}' was not found: a signature ID is a number.", 404)
    return number


async def list_senders(call: AccountCall) -> Response:
    query = Query(call.request)
    return json_response(await call.state.domains.list_senders(query.int("offset", 500), query.int("count", 500)))


async def get_sender(call: AccountCall, sender_id: str) -> Response:
    return json_response(await call.state.domains.get_sender(_sender_id(sender_id)))


async def create_sender(call: AccountCall) -> Response:
    body = await read_required_body(call.request, 520, "send the signature as JSON with 'FromEmail' and 'Name'")
    request = decode(body, wire.SenderSignatureRequest, call.request)
    return json_response(await call.state.domains.create_sender(request))


async def edit_sender(call: AccountCall, sender_id: str) -> Response:
    number = _sender_id(sender_id)
    body = await read_required_body(call.request, 502, "send the changes as JSON")
    request = decode(body, wire.SenderSignatureRequest, call.request)
    return json_response(await call.state.domains.edit_sender(number, request))


async def delete_sender(call: AccountCall, sender_id: str) -> Response:
    return json_response(await call.state.domains.delete_sender(_sender_id(sender_id)))


async def resend_confirmation(call: AccountCall, sender_id: str) -> Response:
    return json_response(await call.state.domains.resend_confirmation(_sender_id(sender_id)))


async def verify_spf(call: AccountCall, sender_id: str) -> Response:
    return json_response(await call.state.domains.verify_sender_spf(_sender_id(sender_id)))


async def request_new_dkim(call: AccountCall, sender_id: str) -> Response:
    return json_response(await call.state.domains.request_new_dkim(_sender_id(sender_id)))


async def confirmation_page(call: PublicCall, token: str) -> Response:
    record = await call.state.domains.confirmation_for(token)
    if record is None:
        return _page("Confirmation link not valid", _NO_LINK, 404)
    address = html.escape(record.email)
    return _page("Confirm a sender signature", (
        f"<p>{address} was added as a sender signature: with it confirmed, mail can be sent with "
        f"<strong>{address}</strong> as its From address.</p>"
        '<form method="post"><button type="submit">Confirm this sender signature</button></form>'))


async def confirm(call: PublicCall, token: str) -> Response:
    record = await call.state.domains.confirm(token)
    if record is None:
        return _page("Confirmation link not valid", _NO_LINK, 404)
    return _page("Sender signature confirmed", f"<p>{html.escape(record.email)} is confirmed.</p>")


ROUTES = (
    # Before /senders/{sender_id}/…: a token could otherwise be read as a signature's action.
    Route("GET", "/senders/confirm/{token}", confirmation_page, PUBLIC),
    Route("POST", "/senders/confirm/{token}", confirm, PUBLIC),
    Route("GET", "/senders", list_senders, ACCOUNT),
    Route("POST", "/senders", create_sender, ACCOUNT),
    Route("GET", "/senders/{sender_id}", get_sender, ACCOUNT),
    Route("PUT", "/senders/{sender_id}", edit_sender, ACCOUNT),
    Route("DELETE", "/senders/{sender_id}", delete_sender, ACCOUNT),
    Route("POST", "/senders/{sender_id}/resend", resend_confirmation, ACCOUNT),
    Route("POST", "/senders/{sender_id}/verifyspf", verify_spf, ACCOUNT),
    Route("POST", "/senders/{sender_id}/requestnewdkim", request_new_dkim, ACCOUNT),
)
