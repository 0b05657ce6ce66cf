"""SMTP submission policy: who may submit (server tokens, trusted networks) and handing mail to acceptance.

This is the `smtp.handler.SubmissionHandler` the SMTP server calls; acceptance itself is
`SendingService.send_submitted`, the same path as the API, so SMTP mail is stored, delivered,
retried and listed exactly like API mail (docs/architecture.md §1).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from posthouse.server.config import IPNetwork
from posthouse.server.errors import (
    ApiError,
    AuthenticationError,
    RateLimitedError,
    SenderNotAllowedError,
    StoreError,
    StoreFullError,
)
from posthouse.server.services.accounts import AccountService, Server
from posthouse.server.services.inbound_bounces import BounceReceiver
from posthouse.server.services.sending import SendingService
from posthouse.server.smtp.handler import INBOUND_BOUNCE, Peer, SmtpReply

log = logging.getLogger("posthouse.smtp")
_CLIENT_ADDRESSES = 10_000  # client addresses whose trusted network is remembered; then started over


class SubmissionService:
    def __init__(self, accounts: AccountService, sending: SendingService,
                 trusted_networks: Sequence[tuple[IPNetwork, str]] = (), hostname: str = "localhost",
                 bounces: BounceReceiver | None = None) -> None:
        self.hostname = hostname
        self.bounces = bounces
        self.accounts = accounts
        self.sending = sending
        self.trusted_networks = tuple(trusted_networks)
        # Client address → (its trusted network, the server it names), or None: one parse per address.
        self._networks: dict[str, tuple[IPNetwork, str] | None] = {}

    async def identify_network(self, peer: Peer) -> object | None:
        """Like Postfix's mynetworks: a listed client network submits as its server without AUTH.

        Called as each client connects, before the greeting, so it is also where the return-path domains a
        bounce may be sent to are brought up to date (the session checks RCPT against them and cannot wait)."""
        if self.bounces is not None:
            await self.bounces.return_paths.refresh()
        if not self.trusted_networks:
            return None
        try:
            trusted = self._networks[peer.host]
        except KeyError:
            trusted = self._network_of(peer.host)
        if trusted is None:
            return None
        network, server_name = trusted
        server = await self.accounts.server_named(server_name)
        if server is None:
            log.warning("trusted network %s names server %r, which does not exist", network, server_name)
        return server

    def _network_of(self, host: str) -> tuple[IPNetwork, str] | None:
        """The first trusted network holding a client address, with the server it names; remembered."""
        if len(self._networks) >= _CLIENT_ADDRESSES:
            self._networks.clear()
        found = None
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            found = next(((network, name) for network, name in self.trusted_networks if address in network), None)
        self._networks[host] = found
        return found

    async def authenticate(self, peer: Peer, mechanism: str, username: str, password: str) -> object | None:
        """Postmark's convention (docs/postmark-api.md §9): the server token is both user name and password."""
        if not password or username.strip() != password.strip():
            return None
        try:
            return await self.accounts.authenticate_server(password)
        except AuthenticationError:
            return None

    async def deliver(self, identity: object, mail_from: str, recipients: Sequence[str], data: bytes,
                      peer: Peer) -> SmtpReply:
        if self.bounces is not None and (identity is INBOUND_BOUNCE or self.bounces.is_bounce(recipients)):
            try:
                return await self.bounces.receive(recipients, data, peer.host)
            except StoreError as exc:
                log.error("store failure, bounce from %s refused with 451: %s", peer.host, exc)
                return SmtpReply(451, "4.3.0 Internal error, try again later")
        if identity is INBOUND_BOUNCE:  # the session allows it only when a return domain is configured
            return SmtpReply(550, "5.7.1 Bounce processing is not configured here")
        assert isinstance(identity, Server)
        try:
            # RFC 3848: ESMTPSA = authenticated (or a trusted network) over TLS, ESMTPA without TLS.
            protocol = "ESMTPSA" if peer.is_tls else "ESMTPA"
            received = f"from [{peer.host}] by {self.hostname} (Posthouse) with {protocol}"
            message_id = await self.sending.send_submitted(identity, mail_from, recipients, data, received)
        except RateLimitedError as exc:
            # Temporary: the client's queue retries later (RFC 3463 4.7.1: delivery not authorized, for now).
            return SmtpReply(451, f"4.7.1 {exc.message}")
        except SenderNotAllowedError as exc:
            # The sender policy (issue 14): a From address this installation may not send as (RFC 3463 5.7.1).
            return SmtpReply(554, f"5.7.1 {exc.message} (ErrorCode {exc.error_code})")
        except ApiError as exc:
            # A message-level problem: refused at end of DATA with the API's words and code.
            return SmtpReply(554, f"5.6.0 {exc.message} (ErrorCode {exc.error_code})")
        except StoreFullError:
            log.error("store full: message from %s refused with 452", peer.host)
            return SmtpReply(452, "4.3.1 Insufficient system storage, try again later")
        except StoreError as exc:
            log.error("store failure, message from %s refused with 451: %s", peer.host, exc)
            return SmtpReply(451, "4.3.0 Internal error, try again later")
        return SmtpReply(250, f"2.0.0 Ok: queued as {message_id}")
