"""The SDK's implementation; applications import the public names from `posthouse` (and `posthouse.sync`).

Layout: `protocol` (calls and answers, no I/O) → `http` (the async and sync I/O layers) → `resources/`
(one module per API resource) → `clients`; `mime` + `smtp` for SMTP; `transports` ties them to one
`send(email)`. Never imports `posthouse.server`.
"""
