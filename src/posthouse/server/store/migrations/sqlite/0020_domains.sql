-- Issue 14: sending domains and sender signatures (docs/postmark-api.md §8.4), account-wide.
-- AUTOINCREMENT: a deleted domain's or signature's id is never given to a new one.
-- A domain `name` is stored lower-cased, as an A-label (IDNA), without a trailing dot. `dkim_verified` is
-- "has ever been verified" (Postmark keeps DKIMVerified true once it was); `return_path_verified` and
-- `spf_verified` are what the last check found. Booleans are 0/1.
CREATE TABLE domains (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    return_path_domain TEXT NOT NULL,
    return_path_verified INTEGER NOT NULL,
    spf_verified INTEGER NOT NULL,
    dkim_verified INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX domains_by_return_path ON domains (return_path_domain) WHERE return_path_domain <> '';

-- A domain's DKIM keys (services/dkim_keys.py): `state` is pending (published, not yet seen in DNS: signs
-- nothing), active (signs) or revoked (replaced by a rotation; kept so its DNS record can be named for
-- removal). One generation is made at a time: one key, or an RSA and an Ed25519 key together.
-- The private key is PKCS#8 PEM, kept as the installation's other secrets are (the `secrets` table).
CREATE TABLE dkim_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_key TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    activated_at INTEGER,
    revoked_at INTEGER,
    UNIQUE (domain_id, selector)
);

-- Sender signatures: one From address each, unique case-insensitively. `domain` is the address's domain as
-- `domains.name` spells it. The confirmation link's token is kept only as its SHA-256 (`confirm_token`).
CREATE TABLE sender_signatures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    reply_to TEXT NOT NULL,
    confirmation_note TEXT NOT NULL,
    confirmed INTEGER NOT NULL,
    confirm_token TEXT,
    confirmation_sent_at INTEGER,
    confirmed_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX sender_signatures_email ON sender_signatures (lower(email));
CREATE UNIQUE INDEX sender_signatures_token ON sender_signatures (confirm_token) WHERE confirm_token IS NOT NULL;
