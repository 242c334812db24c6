"""Where a sign-in may send the browser afterwards: a path of this site, nothing else."""

from __future__ import annotations

import re

# A path of this site: "/", then letters, digits and the few punctuation marks our own paths
# and queries use. No "//" or backslash (a browser reads "/\evil.example" as another host),
# no scheme, no control character.
_LOCAL = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~?=&%-]*")


def local_path(target: str | None) -> str:
    """`target` if it is a path of this site, else "" (never an open redirect)."""
    if not target or len(target) > 300:
        return ""
    return target if _LOCAL.fullmatch(target) else ""
