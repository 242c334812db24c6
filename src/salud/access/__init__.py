"""Who may see what: accounts, roles and permissions, tokens, and the audit log.

The lowest domain: every other domain asks it whether the caller may act, and tells it what
was done, before touching personal data (NOM-024-SSA3-2012: role-based access and an audit
trail of every access and change)."""
