"""Sends under an `Idempotency-Key` (a Posthouse extension): replaying a recorded answer, or running
the send holding the key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.responses import Response

from posthouse import wire
from posthouse.server.api.access import SendCall, ServerCall
from posthouse.server.api.payloads import json_response
from posthouse.server.errors import ApiError, RateLimitedError
from posthouse.server.services.idempotency import Replay
from posthouse.server.store.idempotency import IdempotencyKey


async def idempotent(call: SendCall | ServerCall, body: bytes,
                     run: Callable[[IdempotencyKey | None], Awaitable[object]]) -> Response:
    """Run a send under its `Idempotency-Key`: replay a recorded answer with `Idempotent-Replayed: true`,
    or run it holding the key. The send records its own answer with its mail; a refusal is recorded
    here; an internal failure lets the key go, so a retry runs again. The test token holds no key."""
    request, server, service = call.request, call.server, call.state.idempotency
    key = request.headers.get("idempotency-key")
    if key is None or server is None:
        return json_response(await run(None))
    began = await service.begin(server.id, key, request.method, request.url.path, body)
    if isinstance(began, Replay):
        headers = {"Idempotent-Replayed": "true"}
        if began.status_code >= 400:
            headers["X-PM-ApiErrorCode"] = str(msgspec.json.decode(began.body).get("ErrorCode", 0))
        return Response(began.body, status_code=began.status_code, media_type="application/json", headers=headers)
    try:
        result = await run(began)
    except RateLimitedError:
        await service.release(began)  # nothing was done: the same key may run again after Retry-After
        raise
    except ApiError as exc:
        error = wire.ErrorResponse(error_code=exc.error_code, message=exc.message)
        await service.finish(began, exc.http_status, wire.encoder.encode(error))
        raise
    except BaseException:
        await service.release(began)
        raise
    return json_response(result)
