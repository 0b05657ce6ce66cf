"""The domain routes (account token): list, get, create, edit, delete, and DNS verification and DKIM key
rotation (docs/postmark-api.md §8.4). The work is `services.domains.DomainService`'s."""

from __future__ import annotations

from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import ACCOUNT, AccountCall
from posthouse.server.api.payloads import decode, json_response, read_required_body
from posthouse.server.api.routing import Query, Route, parse_id
from posthouse.server.errors import NotFoundError


def _domain_id(value: str) -> int:
    number = parse_id(value)
    if number is None:
        raise NotFoundError(510, f"Domain '{value}' was not found: a domain ID is a number.", 404)
    return number


async def list_domains(call: AccountCall) -> Response:
    query = Query(call.request)
    return json_response(await call.state.domains.list_domains(query.int("offset", 500), query.int("count", 500)))


async def get_domain(call: AccountCall, domain_id: str) -> Response:
    return json_response(await call.state.domains.get_domain(_domain_id(domain_id)))


async def create_domain(call: AccountCall) -> Response:
    body = await read_required_body(call.request, 514, "send the domain as JSON with its 'Name'")
    return json_response(await call.state.domains.create_domain(decode(body, wire.DomainRequest, call.request)))


async def edit_domain(call: AccountCall, domain_id: str) -> Response:
    number = _domain_id(domain_id)
    body = await read_required_body(call.request, 511, "send the changes as JSON ('ReturnPathDomain')")
    return json_response(await call.state.domains.edit_domain(number, decode(body, wire.DomainRequest, call.request)))


async def delete_domain(call: AccountCall, domain_id: str) -> Response:
    return json_response(await call.state.domains.delete_domain(_domain_id(domain_id)))


async def verify_dkim(call: AccountCall, domain_id: str) -> Response:
    return json_response(await call.state.domains.verify_dkim(_domain_id(domain_id)))


async def verify_return_path(call: AccountCall, domain_id: str) -> Response:
    return json_response(await call.state.domains.verify_return_path(_domain_id(domain_id)))


async def verify_spf(call: AccountCall, domain_id: str) -> Response:
    return json_response(await call.state.domains.verify_spf(_domain_id(domain_id)))


async def rotate_dkim(call: AccountCall, domain_id: str) -> Response:
    return json_response(await call.state.domains.rotate_dkim(_domain_id(domain_id)))


ROUTES = (
    Route("GET", "/domains", list_domains, ACCOUNT),
    Route("POST", "/domains", create_domain, ACCOUNT),
    Route("GET", "/domains/{domain_id}", get_domain, ACCOUNT),
    Route("PUT", "/domains/{domain_id}", edit_domain, ACCOUNT),
    Route("DELETE", "/domains/{domain_id}", delete_domain, ACCOUNT),
    Route("PUT", "/domains/{domain_id}/verifyDkim", verify_dkim, ACCOUNT),
    Route("PUT", "/domains/{domain_id}/verifyReturnPath", verify_return_path, ACCOUNT),
    Route("POST", "/domains/{domain_id}/verifyspf", verify_spf, ACCOUNT),
    Route("POST", "/domains/{domain_id}/rotatedkim", rotate_dkim, ACCOUNT),
)
