"""An unknown path or a method a path does not serve: a clear error whose ErrorCode is not Postmark's 0 ("OK")."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("method", "path", "status", "words"), [
    ("GET", "/no/such/endpoint", 404, "No endpoint at /no/such/endpoint."),
    ("POST", "/emails", 404, "No endpoint at /emails."),
    ("DELETE", "/email", 405, "Method DELETE is not allowed on /email."),
    ("PATCH", "/server", 405, "Method PATCH is not allowed on /server."),
])
async def test_no_endpoint_is_an_error_with_a_nonzero_code(api, method, path, status, words) -> None:  # type: ignore[no-untyped-def]
    response = await api.client.request(method, path, headers=api.server_headers)
    assert response.status_code == status
    body = response.json()
    assert body == {"ErrorCode": 404, "Message": words}
    assert body["ErrorCode"] != 0  # 0 is Postmark's "success"
    assert response.headers["X-PM-ApiErrorCode"] == "404"


async def test_postmark_pythons_error_reading_makes_it_a_plain_api_error(api) -> None:  # type: ignore[no-untyped-def]
    """postmark-python's own functions, given the real answer: an error carrying 404, not a success nor a
    validation or "not allowed to send" error."""
    from postmark.exceptions import PostmarkAPIException, ValidationException, get_exception_class
    from postmark.utils.server_utils import parse_error_response

    for method, path in (("GET", "/no/such/endpoint"), ("DELETE", "/email")):
        response = await api.client.request(method, path, headers=api.server_headers)
        message, code = parse_error_response(response)
        assert code == 404 and message.startswith(("No endpoint", "Method DELETE"))
        chosen = get_exception_class(code, response.status_code)
        assert issubclass(chosen, PostmarkAPIException) and not issubclass(chosen, ValidationException)


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/email", "POST"),
    ("PATCH", "/server", "GET, PUT"),
    ("TRACE", "/templates/welcome", "DELETE, GET, PUT"),
    ("POST", "/Bounces/7/", "GET"),  # matched as routing matches: case-insensitive, trailing slash optional
])
async def test_a_wrong_method_lists_the_allowed_ones(api, method: str, path: str, allowed: str) -> None:  # type: ignore[no-untyped-def]
    """RFC 9110 §15.5.6: a 405 carries `Allow` with the target's methods (the HTTP fuzz run found it missing)."""
    response = await api.client.request(method, path, headers=api.server_headers)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
