"""The OpenAPI document: served, covering every route, every reference resolving, extensions marked."""

from __future__ import annotations

from typing import Any


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


async def test_the_document_covers_every_route_and_resolves(api) -> None:  # type: ignore[no-untyped-def]
    answer = await api.client.get("/openapi.json")
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    served = {(route.method, route.path) for route in api.runtime.app.router.routes}
    assert served == documented
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


async def test_extensions_are_marked_and_send_endpoints_take_idempotency_keys(api) -> None:  # type: ignore[no-untyped-def]
    doc = (await api.client.get("/openapi.json")).json()
    paths = doc["paths"]
    for path, method in [("/messages/outbound/{message_id}/cancel", "put"),
                         ("/messages/outbound/{message_id}/schedule", "put"),
                         ("/webhooks/{webhook_id}/deliveries", "get")]:
        assert paths[path][method]["x-posthouse-extension"] is True
    for path in ("/email", "/email/batch", "/email/withTemplate", "/email/batchWithTemplates", "/email/bulk"):
        names = [p["name"] for p in paths[path]["post"]["parameters"]]
        assert "Idempotency-Key" in names
    email_schema = doc["components"]["schemas"]["EmailRequest"]
    assert "SendAt" in email_schema["properties"] and "From" in email_schema["properties"]
    assert "x-posthouse-extension" not in paths["/email"]["post"]


async def test_the_domain_and_sender_routes_are_documented(api) -> None:  # type: ignore[no-untyped-def]
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert paths["/domains/{domain_id}/verifyDkim"]["put"]["security"] == [{"account": []}]
    assert paths["/senders"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SenderSignatureRequest")
    page = paths["/senders/confirm/{token}"]["post"]
    assert page["x-posthouse-extension"] is True and "security" not in page
    assert set(page["responses"]["404"]["content"]) == {"text/html"}
