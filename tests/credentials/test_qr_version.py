"""The QR version is computed from the text's length, without encoding: it must be the
version segno's encoder picks for the same text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from salud.credentials.render import make_qr, qr_version

BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=BASE45, min_size=1, max_size=3000))
def test_the_computed_version_is_the_encoders(text: str) -> None:
    assert qr_version(text) == make_qr(text).version


def test_the_version_grows_at_the_capacity_boundaries() -> None:
    # Alphanumeric at level M: version 1 holds 20 characters, version 2 holds 38.
    assert [qr_version("A" * n) for n in (20, 21, 38, 39)] == [1, 2, 2, 3]
