"""The two shortcuts that seal large batches before or without one canonical form per row
(`presealed`, `seal_alike`) give the chain `_seal` gives, byte for byte: `salud audit verify`
checks every entry with `chain_of`, so a shortcut that differed would read as tampering."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from salud.access.audit import AuditEntry, _row_of
from salud.access.audit_chain import _seal, _seal_presealed, presealed, seal_alike
from salud.kit.clock import utcnow

_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)
_CURP = st.from_regex(r"[A-Z]{4}[0-9]{6}[HM][A-Z]{5}[A-Z0-9][0-9]", fullmatch=True)
_DETAIL = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["person_curp", "seq", "subject_id", "n", "razón"]),
        st.one_of(st.integers(-5, 5), _TEXT, st.just('"seq":0,"subject_id":')),
        max_size=4,
    ),
)
_LAST = st.one_of(
    st.none(),
    st.tuples(st.integers(1, 10**9), st.text("0123456789abcdef", min_size=64, max_size=64)),
)


def _entry(actor: str, subject: str | None, detail: dict[str, Any] | None) -> AuditEntry:
    return AuditEntry(actor=actor, role="client", action="identity:person:import",
                      subject_type="person", subject_id=subject, purpose="importacion",
                      detail=detail)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(actor=_TEXT, subject=st.one_of(st.none(), _TEXT), detail=_DETAIL,
       curps=st.lists(_CURP, min_size=1, max_size=6), last=_LAST)  # fmt: skip
def test_the_shortcuts_seal_the_same_chain(
    actor: str, subject: str | None, detail: dict[str, Any] | None, curps: list[str],
    last: tuple[int, str] | None,
) -> None:  # fmt: skip
    key = b"clave"
    base = _row_of(_entry(actor, subject, detail), utcnow())
    plain = [{**base, "person_curp": c} for c in curps]
    first = _seal(plain, key, last)

    ahead = [{**base, "person_curp": c} for c in curps]
    parts = [presealed(row) for row in ahead]
    assert _seal_presealed(ahead, parts, key, last) == first
    assert [r["chain"] for r in ahead] == [r["chain"] for r in plain]

    alike_first, chains = seal_alike(base, curps, key, last)
    assert alike_first == first
    assert chains == [r["chain"] for r in plain]
    assert [r["seq"] for r in plain] == list(range(first, first + len(curps)))
