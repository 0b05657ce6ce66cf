"""The official clients against the real server at a path it does not serve: each raises a plain error that
carries the answer's code and words (the body's ErrorCode is not Postmark's 0, "OK")."""

from __future__ import annotations

import pytest
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from support import ServerProcess


@pytest.fixture
def server(tmp_path, database_url: str):  # type: ignore[no-untyped-def]
    with ServerProcess(tmp_path / "data", database_url) as running:
        yield running


def test_postmarker_raises_client_error_with_the_code(server) -> None:  # type: ignore[no-untyped-def]
    pm = PostmarkClient(server_token=server.server_token, root_api_url=server.base_url + "/")
    with pytest.raises(ClientError) as missing:
        pm.call("GET", "/no/such/endpoint")
    assert missing.value.error_code == 404
    assert str(missing.value) == "[404] No endpoint at /no/such/endpoint."
    with pytest.raises(ClientError) as wrong_method:
        pm.call("DELETE", "/email")
    assert wrong_method.value.error_code == 404
    assert str(wrong_method.value) == "[404] Method DELETE is not allowed on /email."


async def test_postmark_python_raises_a_plain_api_error(server) -> None:  # type: ignore[no-untyped-def]
    import postmark
    from postmark.exceptions import PostmarkAPIException, ValidationException

    async with postmark.ServerClient(server.server_token, base_url=server.base_url, retries=0) as client:
        with pytest.raises(PostmarkAPIException) as missing:
            await client.request("GET", "/no/such/endpoint")
    assert not isinstance(missing.value, ValidationException)
    assert (missing.value.error_code, missing.value.http_status) == (404, 404)
    assert missing.value.message == "No endpoint at /no/such/endpoint."
