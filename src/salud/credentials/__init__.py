"""The health credential: signing keys, the Claim 169 QR, issuance and life cycle,
verification (offline and online) and card rendering.

`claims`, `keyset` and `verify` form the offline verifier: they import no database code
(checked by import-linter), so a phone or a separate verification service can run them."""
