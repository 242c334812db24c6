"""After a sign-in the browser goes to a path of this site, never elsewhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from salud.kit.paths import local_path


@given(st.text(max_size=80))
def test_nothing_that_leaves_the_site_gets_through(target: str) -> None:
    kept = local_path(target)
    assert kept in ("", target)
    if kept:
        assert kept.startswith("/")
        assert not kept.startswith("//")
        assert "\\" not in kept
        assert ":" not in kept
        assert all(c.isprintable() and not c.isspace() for c in kept)


def test_our_own_paths_get_through() -> None:
    for target in ("/", "/credencial/", "/avance?state=13&days=7", "/modulo/RABC123"):
        assert local_path(target) == target
    for target in ("//evil.example", "/\\evil.example", "https://evil.example", "credencial",
                   "/x\r\nSet-Cookie: a=b", None, ""):  # fmt: skip
        assert local_path(target) == ""
