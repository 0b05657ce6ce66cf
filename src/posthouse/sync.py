"""The sync clients, under the names the async ones have in `posthouse`: `posthouse.sync.ServerClient`.

    with posthouse.sync.ServerClient(token, base_url="http://127.0.0.1:8080") as client:
        response = client.outbound.send(posthouse.Email(...))

They run on their own `httpx.Client`, not on a thread around the async clients.
"""

from posthouse.client.clients import SyncAccountClient as AccountClient
from posthouse.client.clients import SyncServerClient as ServerClient

__all__ = ["AccountClient", "ServerClient"]
