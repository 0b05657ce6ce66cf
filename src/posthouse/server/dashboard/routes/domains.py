"""Sending domains (docs/postmark-api.md §8.4, issue 14): the list, a new domain, and a domain's page with the
DNS records to publish — each DKIM key's TXT record, the Return-Path CNAME, the SPF record — and the buttons
that check them (`DomainService.verify_dkim`, `verify_return_path`, `verify_spf`), rotate the DKIM key, change
the Return-Path domain, or delete the domain. These are the installation's, not one server's.

A check answers with the domain's page itself (not a redirect), saying what DNS held: a record that is not
published yet changes nothing, and the page says which one to publish.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from posthouse import wire
from posthouse.server.dashboard.rendering import render
from posthouse.server.dashboard.routes.manage import account_page, field, keep_query, notice, see_other
from posthouse.server.dashboard.sessions import state_of
from posthouse.server.errors import ApiError, NotFoundError

DOMAINS_LISTED = 500  # one page: the most DomainService.list_domains gives


def _domain_id(request: Request) -> int:
    text = str(request.path_params["domain_id"])
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise NotFoundError(510, f"There is no domain {text!r}.", 404)
    return int(text)


def _url(domain_id: int | None = None, request: Request | None = None) -> str:
    base = "/ui/domains" + (f"/{domain_id}" if domain_id is not None else "")
    query = keep_query(request) if request is not None else {}
    return base + ("?" + urlencode(query) if query else "")


async def _list_page(request: Request, *, error: str | None = None, status: int = 200,
                     draft: dict[str, str] | None = None) -> Response:
    listed = await state_of(request).domains.list_domains(0, DOMAINS_LISTED)
    return render(request, "domains.html", {
        **await account_page(request, "domains"), "domains": listed.domains, "total": listed.total_count,
        "error": error, "notice": notice(request), "draft": draft or {}, "query": keep_query(request)},
        status=status)


async def domain_list(request: Request) -> Response:
    return await _list_page(request)


async def domain_create(request: Request) -> Response:
    draft = {"name": field(request, "name"), "return_path": field(request, "return_path")}
    try:
        created = await state_of(request).domains.create_domain(wire.DomainRequest(
            name=draft["name"], return_path_domain=draft["return_path"] or None))
    except ApiError as exc:
        return await _list_page(request, error=exc.message, status=400, draft=draft)
    return see_other(f"/ui/domains/{created.id}", "created", **keep_query(request))


async def _domain_page(request: Request, domain: wire.DomainDetails, *, error: str | None = None,
                       checked: list[tuple[bool, str]] | None = None, status: int = 200) -> Response:
    return render(request, "domain.html", {
        **await account_page(request, "domains"), "domain": domain, "error": error, "notice": notice(request),
        "checked": checked or [], "base": f"/ui/domains/{domain.id}", "query": keep_query(request),
        "list_url": _url(None, request)}, status=status)


async def domain_page(request: Request) -> Response:
    return await _domain_page(request, await state_of(request).domains.get_domain(_domain_id(request)))


async def verify_dkim(request: Request) -> Response:
    domains = state_of(request).domains
    domain = await domains.verify_dkim(_domain_id(request))
    pending = [r for r in domain.dkim_records if r.state == "Pending"]
    if not pending:
        result = (True, "DKIM verified: the published key signs this domain's mail.")
    else:
        hosts = ", ".join(r.host for r in pending)
        result = (False, f"DKIM not verified yet: DNS does not hold the pending TXT record at {hosts} (or the "
                         "lookup failed). Publish it as shown, then check again; DNS changes can take a while.")
    return await _domain_page(request, domain, checked=[result])


async def verify_return_path(request: Request) -> Response:
    domain = await state_of(request).domains.verify_return_path(_domain_id(request))
    if not domain.return_path_domain:
        result = (False, "This domain has no Return-Path domain to check: set one first.")
    elif domain.return_path_domain_verified:
        result = (True, f"Return-Path verified: {domain.return_path_domain} points to "
                        f"{domain.return_path_domain_cname_value}.")
    else:
        result = (False, f"Return-Path not verified: {domain.return_path_domain} is not a CNAME to "
                         f"{domain.return_path_domain_cname_value} yet (or the lookup failed).")
    return await _domain_page(request, domain, checked=[result])


async def verify_spf(request: Request) -> Response:
    domain = await state_of(request).domains.verify_spf(_domain_id(request))
    result = (True, "SPF verified: the domain's record includes ours.") if domain.spf_verified else \
        (False, f"SPF not verified: the TXT record of {domain.spf_host} does not include ours (optional: the "
                "Return-Path domain is what receivers check).")
    return await _domain_page(request, domain, checked=[result])


async def rotate_dkim(request: Request) -> Response:
    domains = state_of(request).domains
    domain_id = _domain_id(request)
    try:
        domain = await domains.rotate_dkim(domain_id)
    except ApiError as exc:
        if isinstance(exc, NotFoundError):
            raise
        return await _domain_page(request, await domains.get_domain(domain_id), error=exc.message, status=400)
    return await _domain_page(request, domain, checked=[(True, "A new DKIM key is pending: publish its record, then "
                                                              "verify. The active key signs until then.")])


async def set_return_path(request: Request) -> Response:
    domains = state_of(request).domains
    domain_id = _domain_id(request)
    try:
        await domains.edit_domain(domain_id, wire.DomainRequest(return_path_domain=field(request, "return_path")))
    except ApiError as exc:
        if isinstance(exc, NotFoundError):
            raise
        return await _domain_page(request, await domains.get_domain(domain_id), error=exc.message, status=400)
    return see_other(f"/ui/domains/{domain_id}", "saved", **keep_query(request))


async def domain_delete(request: Request) -> Response:
    await state_of(request).domains.delete_domain(_domain_id(request))
    return see_other("/ui/domains", "deleted", **keep_query(request))


ROUTES = [
    Route("/ui/domains", domain_list, methods=["GET"]),
    Route("/ui/domains", domain_create, methods=["POST"]),
    Route("/ui/domains/{domain_id}", domain_page, methods=["GET"]),
    Route("/ui/domains/{domain_id}/verify-dkim", verify_dkim, methods=["POST"]),
    Route("/ui/domains/{domain_id}/verify-return-path", verify_return_path, methods=["POST"]),
    Route("/ui/domains/{domain_id}/verify-spf", verify_spf, methods=["POST"]),
    Route("/ui/domains/{domain_id}/rotate-dkim", rotate_dkim, methods=["POST"]),
    Route("/ui/domains/{domain_id}/return-path", set_return_path, methods=["POST"]),
    Route("/ui/domains/{domain_id}/delete", domain_delete, methods=["POST"]),
]
