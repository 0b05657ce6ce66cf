"""Sending domains and sender signatures (docs/postmark-api.md §8.4): their DKIM keys, DNS verification, key
rotation, and the confirmation of sender signatures by email.

**Domains.** Creating a domain makes its first key generation (`dkim_keys` setting: RSA-2048, Ed25519 or
both) as *pending* keys and answers with the records to publish: `DKIMPendingHost`/`DKIMPendingTextValue`, the
Return-Path CNAME (`ReturnPathDomainCNAMEValue`: our return-path domain) and an SPF record. `verifyDkim` looks
the pending keys' TXT records up (`DnsLookup`); when every one holds its key, they become *active* (they sign,
services/dkim_keys.py) and the keys they replace become *revoked*. `rotatedkim` makes a new pending
generation while the active one keeps signing, as Postmark's rotation does; `SafeToRemoveRevokedKeyFromDNS`
turns true `REVOKED_GRACE` after the swap, when mail signed with the old key has long been verified.
`verifyReturnPath` checks the CNAME; once verified, the domain's mail goes out with its envelope sender at that
Return-Path domain (services/returnpaths.py). `verifyspf` (deprecated by Postmark) checks that the domain's SPF
record includes `spf_include` (default: our return-path domain), following includes and redirects.

A DNS lookup that gets no answer (DnsLookupError) changes nothing: the answer shows what was known before.

**Sender signatures.** One From address each. Creating one adds its domain (with keys) when the account has no
such domain, so the signature's DKIM and Return-Path fields are that domain's, verified through `/domains`. A new
signature is unconfirmed; Posthouse mails the address a confirmation link, through its own pipeline (stored,
queued and delivered like any message, in the activity of the `sender_confirmation_server` — the first server
by default), From the operator's address (`sender_confirmation_from`). The link (`api_base_url` +
`/senders/confirm/<token>`) shows a page whose button confirms it (a POST: mail scanners that fetch links do not
confirm anything). The token is random, kept only as its SHA-256, used once; a resend replaces it. Under
`sender_policy = "verified"` a confirmed signature may send (services/sender_policy.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from posthouse import wire
from posthouse.server.domain.addresses import AddressError, has_line_break, normalize_email
from posthouse.server.domain.dkim_keys import DkimAlgorithm, public_key_value, txt_record
from posthouse.server.domain.dns_records import (
    MAX_NAME,
    PUBLIC_MAIL_DOMAINS,
    DomainNameError,
    dkim_record_matches,
    is_subdomain,
    normalize_domain,
    spf_includes,
    spf_record,
    spf_text,
)
from posthouse.server.errors import ApiError, NotFoundError
from posthouse.server.services.accounts import AccountService, Server
from posthouse.server.services.clock import Clock
from posthouse.server.services.dkim_keys import generate_keys
from posthouse.server.services.dns_lookup import DnsLookup, DnsLookupError
from posthouse.server.services.sending import SendingService
from posthouse.server.store.base import Store
from posthouse.server.store.domains import ACTIVE, PENDING, REVOKED, DomainRecord, KeyRecord, NewKey, SenderRecord

log = logging.getLogger(__name__)

# How long after a rotation the revoked key's DNS record is said to be safe to remove. Mail is signed as it is
# sent, so nothing new carries the old key after the swap; this covers mail already signed with it that a
# receiver (or a forwarder re-checking it) verifies late: queued at the receiving side, greylisted, forwarded.
REVOKED_GRACE_MICROS = 72 * 3600 * 1_000_000
MAX_PAGE = 500
MAX_SENDER_NAME = 255
MAX_NOTE = 400  # Postmark's limit on ConfirmationPersonalNote (ErrorCode 521)
MAX_SPF_LOOKUPS = 10  # RFC 7208 §4.6.4: includes and redirects followed at most
_STATE_NAMES = {PENDING: "Pending", ACTIVE: "Active", REVOKED: "Revoked"}


@dataclass(frozen=True, slots=True)
class DomainSettings:
    """What the domain service is told by the settings (runtime.py)."""

    key_kinds: tuple[DkimAlgorithm, ...]  # one key generation: `dkim_keys`
    bounce_domain: str  # where Return-Path CNAMEs must point: our return-path domain
    spf_include: str  # what SPF records must include
    confirmation_from: str  # the From of confirmation mail
    confirmation_server: str  # the server whose stream sends it; "" for the first server
    confirmation_base_url: str  # where confirmation links point (the public API), without a trailing "/"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@functools.lru_cache(maxsize=4096)
def _published(algorithm: str, private_key_pem: bytes) -> tuple[str, str]:
    """(the TXT record to publish, its `p=` value) for a key; loading a PEM costs a little, keys never change."""
    kind = DkimAlgorithm(algorithm)
    return txt_record(kind, private_key_pem), public_key_value(kind, private_key_pem)


def _host(key: KeyRecord, domain: str) -> str:
    return f"{key.selector}._domainkey.{domain}"


def _first(keys: Sequence[KeyRecord]) -> KeyRecord | None:
    """The key Postmark's one-key fields show: the RSA one of a generation when there are two."""
    ordered = sorted(keys, key=lambda k: (k.algorithm != DkimAlgorithm.RSA_SHA256.value, k.id))
    return ordered[0] if ordered else None


class DomainService:
    def __init__(self, store: Store, accounts: AccountService, sending: SendingService, clock: Clock,
                 dns: DnsLookup, settings: DomainSettings) -> None:
        self.store = store
        self.accounts = accounts
        self.sending = sending
        self.clock = clock
        self.dns = dns
        self.settings = settings

    # -- answers ---------------------------------------------------------------------------------

    def _dns_fields(self, record: DomainRecord | None) -> dict[str, object]:
        """The DNS part of a domain's (or a signature's) details, Postmark's fields and `DKIMRecords`."""
        if record is None:  # a signature whose domain was deleted
            return {"spf_verified": False, "spf_host": "", "spf_text_value": "", "dkim_verified": False,
                    "weak_dkim": False, "dkim_host": "", "dkim_text_value": "", "dkim_pending_host": "",
                    "dkim_pending_text_value": "", "dkim_revoked_host": "", "dkim_revoked_text_value": "",
                    "safe_to_remove_revoked_key_from_dns": False, "dkim_update_status": "", "return_path_domain": "",
                    "return_path_domain_verified": False,
                    "return_path_domain_cname_value": self.settings.bounce_domain, "dkim_records": []}
        name = record.name
        shown = {state: _first(record.keys_in(state)) for state in (ACTIVE, PENDING, REVOKED)}

        def host(state: str) -> str:
            key = shown[state]
            return _host(key, name) if key is not None else ""

        def text(state: str) -> str:
            key = shown[state]
            return _published(key.algorithm, key.private_key_pem)[0] if key is not None else ""

        revoked = record.keys_in(REVOKED)
        now = self.clock.micros()
        return {
            "spf_verified": record.spf_verified, "spf_host": name,
            "spf_text_value": spf_text(self.settings.spf_include),
            "dkim_verified": record.dkim_verified, "weak_dkim": False,  # RSA-2048 or Ed25519 only
            "dkim_host": host(ACTIVE), "dkim_text_value": text(ACTIVE),
            "dkim_pending_host": host(PENDING), "dkim_pending_text_value": text(PENDING),
            "dkim_revoked_host": host(REVOKED), "dkim_revoked_text_value": text(REVOKED),
            "safe_to_remove_revoked_key_from_dns": bool(revoked) and all(
                k.revoked_at is not None and now - k.revoked_at >= REVOKED_GRACE_MICROS for k in revoked),
            "dkim_update_status": "Pending" if record.keys_in(PENDING) else "Verified",
            "return_path_domain": record.return_path_domain,
            "return_path_domain_verified": record.return_path_verified,
            "return_path_domain_cname_value": self.settings.bounce_domain,
            "dkim_records": [wire.DkimRecord(host=_host(k, name), text_value=_published(k.algorithm,
                                                                                         k.private_key_pem)[0],
                                             algorithm=k.algorithm, state=_STATE_NAMES[k.state])
                             for k in sorted(record.keys, key=lambda k: k.id)],
        }

    def _details(self, record: DomainRecord) -> wire.DomainDetails:
        return wire.DomainDetails(id=record.id, name=record.name, **self._dns_fields(record))  # type: ignore[arg-type]

    async def _sender_details(self, record: SenderRecord) -> wire.SenderSignatureDetails:
        domain = await self.store.find_domain(record.domain)
        return wire.SenderSignatureDetails(
            id=record.id, domain=record.domain, email_address=record.email, reply_to_email_address=record.reply_to,
            name=record.name, confirmed=record.confirmed, confirmation_personal_note=record.confirmation_note,
            **self._dns_fields(domain))  # type: ignore[arg-type]

    # -- domains ---------------------------------------------------------------------------------

    @staticmethod
    def _page(offset: int | None, count: int | None) -> tuple[int, int]:
        count = 100 if count is None else count
        offset = 0 if offset is None else offset
        if not 1 <= count <= MAX_PAGE or offset < 0:
            raise ApiError(500, f"Count must be between 1 and {MAX_PAGE} and offset at least 0.")
        return offset, count

    async def list_domains(self, offset: int | None, count: int | None) -> wire.DomainList:
        total, records = await self.store.list_domains(*self._page(offset, count))
        return wire.DomainList(total_count=total, domains=[wire.DomainSummary(
            id=r.id, name=r.name, spf_verified=r.spf_verified, dkim_verified=r.dkim_verified, weak_dkim=False,
            return_path_domain_verified=r.return_path_verified) for r in records])

    async def _domain(self, domain_id: int) -> DomainRecord:
        record = await self.store.get_domain(domain_id)
        if record is None:
            raise NotFoundError(510, f"Domain {domain_id} was not found.", 404)
        return record

    async def get_domain(self, domain_id: int) -> wire.DomainDetails:
        return self._details(await self._domain(domain_id))

    @staticmethod
    def _domain_name(text: str | None) -> str:
        text = (text or "").strip()
        if not text:
            raise ApiError(514, "Name is a required field to create a Domain.")
        if len(text) > MAX_NAME:
            raise ApiError(515, f"Name field must be less than or equal to {MAX_NAME} characters.")
        try:
            return normalize_domain(text)
        except DomainNameError:
            raise ApiError(516, f"Name format is invalid: '{text}' is not a domain name.") from None

    @staticmethod
    def _return_path(text: str | None, domain: str, error_code: int) -> str:
        """A Return-Path domain for `domain` ("" for none): a host name below it, as Postmark requires."""
        text = (text or "").strip()
        if not text:
            return ""
        try:
            name = normalize_domain(text)
        except DomainNameError:
            name = ""
        if not name or not is_subdomain(name, domain):
            raise ApiError(error_code, f"Invalid 'ReturnPathDomain': '{text}'. It must be a subdomain of {domain} "
                                       f"(e.g. pm-bounces.{domain}) with a CNAME record pointing to "
                                       "the value of ReturnPathDomainCNAMEValue.")
        return name

    async def _new_keys(self, taken: set[str]) -> list[NewKey]:
        return await generate_keys(self.settings.key_kinds, self.clock.now(), taken)

    async def create_domain(self, request: wire.DomainRequest) -> wire.DomainDetails:
        name = self._domain_name(request.name)
        return_path = self._return_path(request.return_path_domain, name, 511)
        if await self.store.find_domain(name) is not None:
            raise ApiError(512, f"The domain {name} already exists on this account.")
        domain_id = await self.store.create_domain(name, return_path, await self._new_keys(set()), self.clock.micros())
        if domain_id is None:  # created by a request that ran alongside
            raise ApiError(512, f"The domain {name} already exists on this account.")
        return self._details(await self._domain(domain_id))

    async def edit_domain(self, domain_id: int, request: wire.DomainRequest) -> wire.DomainDetails:
        record = await self._domain(domain_id)
        if request.return_path_domain is None:
            raise ApiError(511, "Invalid fields supplied: send the new 'ReturnPathDomain'.")
        return_path = self._return_path(request.return_path_domain, record.name, 511)
        if return_path != record.return_path_domain:
            await self.store.set_return_path(domain_id, return_path, self.clock.micros())
        return await self.get_domain(domain_id)

    async def delete_domain(self, domain_id: int) -> wire.ErrorResponse:
        record = await self._domain(domain_id)
        await self.store.delete_domain(domain_id)
        return wire.ErrorResponse(error_code=0, message=f"Domain {record.name} removed.")

    async def verify_dkim(self, domain_id: int) -> wire.DomainDetails:
        """Activate the pending keys when DNS holds every one of them; otherwise change nothing."""
        record = await self._domain(domain_id)
        pending = record.keys_in(PENDING)
        if pending and await self._published_all(record.name, pending):
            await self.store.activate_pending_keys(domain_id, [k.selector for k in pending], self.clock.micros())
            record = await self._domain(domain_id)
        return self._details(record)

    async def _published_all(self, domain: str, keys: Sequence[KeyRecord]) -> bool:
        for key in keys:
            try:
                records = await self.dns.txt(_host(key, domain))
            except DnsLookupError as exc:
                log.warning("DKIM verification of %s: %s", domain, exc)
                return False
            public = _published(key.algorithm, key.private_key_pem)[1]
            if not any(dkim_record_matches(r, DkimAlgorithm(key.algorithm), public) for r in records):
                return False
        return True

    async def verify_return_path(self, domain_id: int) -> wire.DomainDetails:
        record = await self._domain(domain_id)
        if record.return_path_domain:
            try:
                target = await self.dns.cname(record.return_path_domain)
            except DnsLookupError as exc:
                log.warning("Return-Path verification of %s: %s", record.return_path_domain, exc)
            else:
                verified = target == self.settings.bounce_domain.lower().rstrip(".")
                await self.store.record_return_path_check(domain_id, record.return_path_domain, verified,
                                                          self.clock.micros())
                record = await self._domain(domain_id)
        return self._details(record)

    async def verify_spf(self, domain_id: int) -> wire.DomainDetails:
        record = await self._domain(domain_id)
        found = await self._spf_includes_us(record.name)
        if found is not None:
            await self.store.record_spf_check(domain_id, found, self.clock.micros())
            record = await self._domain(domain_id)
        return self._details(record)

    async def _spf_includes_us(self, domain: str) -> bool | None:
        """Whether the domain's SPF record reaches `include:<spf_include>` (through includes and a redirect, at
        most MAX_SPF_LOOKUPS names); None when DNS did not answer."""
        wanted = self.settings.spf_include.lower().rstrip(".")
        todo, seen = [domain], set[str]()
        try:
            while todo and len(seen) < MAX_SPF_LOOKUPS:
                name = todo.pop(0)
                if name in seen:
                    continue
                seen.add(name)
                record = spf_record(await self.dns.txt(name))
                if record is None:
                    continue
                includes, redirect = spf_includes(record)
                if wanted in includes:
                    return True
                todo.extend([*includes, *([redirect] if redirect else [])])
        except DnsLookupError as exc:
            log.warning("SPF verification of %s: %s", domain, exc)
            return None
        return False

    async def rotate_dkim(self, domain_id: int) -> wire.DomainDetails:
        """A new pending key generation; the active keys sign until it is verified (505 while one waits)."""
        record = await self._domain(domain_id)
        if record.keys_in(PENDING) or not await self.store.add_pending_keys(
                domain_id, await self._new_keys({k.selector for k in record.keys}), self.clock.micros()):
            raise ApiError(505, "DKIM already scheduled for renewal: publish the pending key (DKIMPendingHost, "
                                "DKIMPendingTextValue) and verify it (/verifyDkim) before rotating again.")
        return self._details(await self._domain(domain_id))

    # -- sender signatures -----------------------------------------------------------------------

    async def list_senders(self, offset: int | None, count: int | None) -> wire.SenderSignatureList:
        total, records = await self.store.list_senders(*self._page(offset, count))
        return wire.SenderSignatureList(total_count=total, sender_signatures=[wire.SenderSignatureSummary(
            id=r.id, domain=r.domain, email_address=r.email, reply_to_email_address=r.reply_to, name=r.name,
            confirmed=r.confirmed) for r in records])

    async def _sender(self, sender_id: int) -> SenderRecord:
        record = await self.store.get_sender(sender_id)
        if record is None:
            raise NotFoundError(501, f"Sender Signature {sender_id} was not found.", 404)
        return record

    async def get_sender(self, sender_id: int) -> wire.SenderSignatureDetails:
        return await self._sender_details(await self._sender(sender_id))

    @staticmethod
    def _address(text: str, field: str) -> str:
        try:
            return normalize_email(text.strip())
        except AddressError:
            raise ApiError(522, f"Invalid '{field}' address: '{text}'.") from None

    @staticmethod
    def _sender_name(text: str | None) -> str:
        name = (text or "").strip()
        if not name:
            raise ApiError(520, "You are missing a required field to create a Sender Signature: 'Name'.")
        if has_line_break(name):  # a display name is one line; NUL cannot be stored (PostgreSQL text)
            raise ApiError(522, "Invalid 'Name': it may not contain line breaks or NUL characters.")
        if len(name) > MAX_SENDER_NAME:
            raise ApiError(521, f"A field in the Sender Signature request is too long: 'Name' is limited to "
                                f"{MAX_SENDER_NAME} characters.")
        return name

    @staticmethod
    def _note(text: str | None) -> str:
        if text is None:
            return ""
        if len(text) > MAX_NOTE:
            raise ApiError(521, f"A field in the Sender Signature request is too long: 'ConfirmationPersonalNote' "
                                f"is limited to {MAX_NOTE} characters.")
        if text and not text.strip():
            raise ApiError(522, "ConfirmationPersonalNote must contain at least one non-whitespace character.")
        if "\x00" in text:
            raise ApiError(522, "Invalid 'ConfirmationPersonalNote': it may not contain NUL characters.")
        return text.strip()

    async def create_sender(self, request: wire.SenderSignatureRequest) -> wire.SenderSignatureDetails:
        if not (request.from_email or "").strip():
            raise ApiError(520, "You are missing a required field to create a Sender Signature: 'FromEmail'.")
        email = self._address(request.from_email or "", "FromEmail")
        name = self._sender_name(request.name)
        reply_to = self._address(request.reply_to_email, "ReplyToEmail") if request.reply_to_email else ""
        note = self._note(request.confirmation_personal_note)
        domain = normalize_domain(email.rpartition("@")[2])
        if domain in PUBLIC_MAIL_DOMAINS:
            raise ApiError(503, f"You cannot use a public domain ({domain}) for a Sender Signature: use an address "
                                "on a domain you control.")
        return_path = self._return_path(request.return_path_domain, domain, 522) \
            if request.return_path_domain is not None else None
        now = self.clock.micros()
        existing = await self.store.find_domain(domain)
        if existing is None:  # the signature's DKIM and Return-Path are its domain's (see the module docstring)
            await self.store.create_domain(domain, return_path or "", await self._new_keys(set()), now)
        elif return_path is not None and return_path != existing.return_path_domain:
            await self.store.set_return_path(existing.id, return_path, now)
        sender_id = await self.store.create_sender(email, domain, name, reply_to, note, now)
        if sender_id is None:
            raise ApiError(504, f"A Sender Signature for {email} already exists.")
        record = await self._sender(sender_id)
        try:
            await self._send_confirmation(record)
        except ApiError as exc:  # the signature stays; `/resend` tries again once the cause is fixed
            log.warning("sender signature %s: the confirmation email was not sent: %s", email, exc.message)
        return await self._sender_details(await self._sender(sender_id))

    async def edit_sender(self, sender_id: int, request: wire.SenderSignatureRequest) -> wire.SenderSignatureDetails:
        record = await self._sender(sender_id)
        if request.name is None and request.reply_to_email is None and request.return_path_domain is None and \
                request.confirmation_personal_note is None:
            raise ApiError(502, "No updated Sender Signature data received.")
        if request.name is not None:
            record.name = self._sender_name(request.name)
        if request.reply_to_email is not None:
            record.reply_to = self._address(request.reply_to_email, "ReplyToEmail") \
                if request.reply_to_email.strip() else ""
        if request.confirmation_personal_note is not None:
            record.confirmation_note = self._note(request.confirmation_personal_note)
        if request.return_path_domain is not None:
            return_path = self._return_path(request.return_path_domain, record.domain, 522)
            domain = await self.store.find_domain(record.domain)
            if domain is not None and domain.return_path_domain != return_path:
                await self.store.set_return_path(domain.id, return_path, self.clock.micros())
        await self.store.update_sender(record)
        return await self._sender_details(record)

    async def delete_sender(self, sender_id: int) -> wire.ErrorResponse:
        record = await self._sender(sender_id)
        await self.store.delete_sender(sender_id)
        return wire.ErrorResponse(error_code=0, message=f"Signature {record.email} removed.")

    async def resend_confirmation(self, sender_id: int) -> wire.ErrorResponse:
        record = await self._sender(sender_id)
        if record.confirmed:
            raise ApiError(506, f"This Sender Signature ({record.email}) is already confirmed.")
        await self._send_confirmation(record)
        return wire.ErrorResponse(error_code=0,
                                  message=f"Confirmation email for Sender Signature {record.email} was re-sent.")

    async def verify_sender_spf(self, sender_id: int) -> wire.SenderSignatureDetails:
        record = await self._sender(sender_id)
        domain = await self.store.find_domain(record.domain)
        if domain is not None:
            await self.verify_spf(domain.id)
        return await self._sender_details(record)

    async def request_new_dkim(self, sender_id: int) -> wire.SenderSignatureRenewal:
        """Postmark's deprecated per-signature DKIM renewal: a rotation of the signature's domain (505 while a
        new key waits), or a new domain with its first key when the signature's domain was deleted."""
        record = await self._sender(sender_id)
        domain = await self.store.find_domain(record.domain)
        if domain is None:
            await self.store.create_domain(record.domain, "", await self._new_keys(set()), self.clock.micros())
        else:
            await self.rotate_dkim(domain.id)
        details = await self._sender_details(record)
        return wire.SenderSignatureRenewal(
            **{f: getattr(details, f) for f in details.__struct_fields__}, error_code=0,
            message=f"A new DKIM key was made for {record.domain}: publish DKIMPendingHost and DKIMPendingTextValue, "
                    "then verify it.")

    # -- confirmation ----------------------------------------------------------------------------

    async def _confirmation_server(self) -> Server:
        name = self.settings.confirmation_server
        if name:
            server = await self.accounts.server_named(name)
        else:
            _, first = await self.store.list_servers(0, 1, None)
            server = await self.accounts.server_by_id(first[0].id) if first else None
        if server is None:
            raise ApiError(300, "The confirmation email cannot be sent: no server to send it through"
                                + (f" (sender_confirmation_server names '{name}', which does not exist)." if name
                                   else "."))
        return server

    async def _send_confirmation(self, record: SenderRecord) -> None:
        """Mail the address a new confirmation link (the one before stops working)."""
        server = await self._confirmation_server()
        token = secrets.token_urlsafe(32)
        if not await self.store.set_confirmation_token(record.id, token_hash(token), self.clock.micros()):
            return  # confirmed or deleted meanwhile
        link = f"{self.settings.confirmation_base_url}/senders/confirm/{token}"
        note = f"\nA note from the person who added it:\n\n    {record.confirmation_note}\n" \
            if record.confirmation_note else ""
        text = (f"Hello {record.name},\n\n"
                f"{record.email} was added as a sender signature to a Posthouse installation, so that mail can be "
                f"sent with it as the From address.\n{note}\nIf you agree, confirm it here:\n\n    {link}\n\n"
                "If you did not expect this, ignore this message: the address stays unconfirmed, and nothing is "
                "sent from it where confirmed senders are required.\n")
        request = wire.EmailRequest(sender=self.settings.confirmation_from, to=record.email,
                                    subject=f"Confirm your sender signature for {record.email}", text_body=text,
                                    tag="sender-confirmation", track_opens=False, track_links="None",
                                    message_stream="outbound")
        try:
            await self.sending.send(server, request)
        except ApiError as exc:
            raise ApiError(exc.error_code, f"The confirmation email cannot be sent: {exc.message}") from None

    async def confirmation_for(self, token: str) -> SenderRecord | None:
        """The signature a confirmation link names, while the link is good (for the page that asks)."""
        return await self.store.find_sender_by_token(token_hash(token))

    async def confirm(self, token: str) -> SenderRecord | None:
        """Confirm the signature a link names; None when the link is no good (used, replaced, removed)."""
        return await self.store.confirm_sender(token_hash(token), self.clock.micros())
