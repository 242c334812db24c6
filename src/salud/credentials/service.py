"""Use cases of the credential: issue and reissue, life cycle, the digital card, and
validation (online, audited; public, anonymous).

A plastic card's QR is signed once, at issuance, and stored as printed: the card cannot
change, so status and entitlement are answered online (`validate`). The digital card is
signed anew each time the phone asks (`digital_card`), with a statement of the entitlement in
force at that moment, valid for a few hours."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from salud.access import revocation
from salud.access.audit import AuditEntry, AuditLog
from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.credentials import render, repository, signing
from salud.credentials.claims import (
    CardClaims,
    CardKind,
    Entitlement,
    Holder,
    credential_id_bytes,
    credential_id_text,
    to_cbor,
)
from salud.credentials.keyset import KeySet
from salud.credentials.models import Credential, CredentialEvent
from salud.credentials.schemas import (
    CardState,
    CredentialRead,
    DigitalCardRead,
    EntitlementRead,
    HolderRead,
    IssueReason,
    PlasticStep,
    PublicValidationRead,
    Status,
    StatusChange,
    ValidationRead,
)
from salud.credentials.signing import Signer
from salud.credentials.verify import Reason, VerificationFailed, Verified, stored_claims, verify
from salud.errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound
from salud.facilities import service as facilities
from salud.identity import guardians, photos
from salud.identity import repository as persons
from salud.identity.catalogs import affiliation_catalog
from salud.identity.curp import STATES
from salud.identity.models import Person
from salud.identity.service import check_curp
from salud.kit.clock import today_mx, utcnow
from salud.kit.sealing import Keyring
from salud.storage import locks
from salud.storage.fastread import FastReader

CURRENT = frozenset({Status.ISSUED, Status.PRINTED, Status.READY_FOR_PICKUP, Status.DELIVERED})
_NEXT: dict[str, frozenset[str]] = {  # the plastic's way from issuance to the person's hands
    "issued": frozenset({"printed"}),
    "printed": frozenset({"ready_for_pickup"}),
    "ready_for_pickup": frozenset({"delivered"}),
    "delivered": frozenset(),
}
_CREDENTIAL_ID = re.compile(r"^[a-z2-7]{16}$")
# Each state as the desk reads it (messages are Spanish; the API's codes stay English).
STATUS_NAMES: dict[str, str] = {
    Status.ISSUED: "expedida",
    Status.PRINTED: "impresa",
    Status.READY_FOR_PICKUP: "lista para entrega",
    Status.DELIVERED: "entregada",
    Status.SUSPENDED: "suspendida",
    Status.REVOKED: "revocada",
    Status.SUPERSEDED: "reemplazada por una reposición",
}
# What the card's front and its QR state, in the order the card shows them, and how the desk
# names each (the validation's `outdated`).
PRINTED_FIELDS: dict[str, str] = {
    "given_names": "nombre",
    "surnames": "apellidos",
    "birth_date": "fecha de nacimiento",
    "sex": "sexo",
    "nationality": "nacionalidad",
    "blood_type": "grupo sanguíneo",
    "organ_donor": "donación de órganos",
}
STATUS_MESSAGES = {
    "suspended": "La credencial está suspendida.",
    "revoked": "La credencial fue revocada.",
    "superseded": "La credencial fue reemplazada por una reposición: esta tarjeta ya no vale.",
    "unknown": "La firma es válida pero esta credencial no está en el padrón.",
}
# The public validation's one answer for every card that is not the holder's current one
# (suspended, revoked, superseded, a digital card switched off): that a card was suspended,
# revoked or replaced is the holder's business and reception's, not anyone's with a phone.
PUBLIC_NOT_CURRENT = "not_current"
PUBLIC_NOT_CURRENT_MESSAGE = (
    "Esta tarjeta no es la credencial vigente de su titular: no sirve para identificarse."
)


@dataclass(frozen=True, slots=True)
class CredentialConfig:
    issuer: str
    public_base_url: str
    validity_years: int
    statement_hours: int
    qr_face: bool


def _read(row: Credential) -> CredentialRead:
    return CredentialRead(
        credential_id=row.credential_id, person_curp=row.person_curp, sequence=row.sequence,
        status=Status(row.status), digital_active=row.digital_active,
        reason=IssueReason(row.reason), issued_at=row.issued_at, expires_at=row.expires_at,
        status_changed_at=row.status_changed_at, superseded_by=row.superseded_by,
        qr_version=render.qr_version(row.qr_text) if row.qr_text else None,
    )  # fmt: skip


def holder_of(person: Person) -> Holder:
    surnames = " ".join(p for p in (person.first_surname, person.second_surname) if p)
    return Holder(
        curp=person.curp, given_names=person.given_names, surnames=surnames,
        birth_date=person.birth_date, sex=person.sex, nationality=person.nationality,
        blood_type=person.blood_type, organ_donor=person.organ_donor,
    )  # fmt: skip


def status_name(status: str) -> str:
    """A card's state in the desk's words (`STATUS_NAMES`)."""
    return STATUS_NAMES.get(status, status)


def outdated_fields(card: Holder, now: Holder) -> list[str]:
    """The fields a card states (signed at its issuance) that the registry has changed
    since: the card says one thing and the registry another, so it must be replaced (a
    reissue with reason `update`)."""
    return [f for f in PRINTED_FIELDS if getattr(card, f) != getattr(now, f)]


def _fields_text(fields: list[str]) -> str:
    return ", ".join(PRINTED_FIELDS[f] for f in fields)


def _holder_read(h: Holder) -> HolderRead:
    return HolderRead(
        curp=h.curp, given_names=h.given_names, surnames=h.surnames, birth_date=h.birth_date,
        sex=h.sex, nationality=h.nationality, blood_type=h.blood_type, organ_donor=h.organ_donor,
    )  # fmt: skip


def entitlements(person: Person, on: date) -> list[EntitlementRead]:
    """Affiliations in force on a day, with the institution's name."""
    rows = [
        {"institution_code": a.institution_code, "status": a.status,
         "valid_from": a.valid_from, "valid_to": a.valid_to}
        for a in person.affiliations
    ]  # fmt: skip
    return _entitlements_of(rows, on)


def _face_thumbnail(data: bytes) -> bytes:
    """A 48×60 grayscale WebP (about 0.5 KB) for the QR, when configured."""
    with Image.open(io.BytesIO(data)) as raw:
        small = raw.convert("L").resize((48, 60), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, "WEBP", quality=30, method=6)
    return out.getvalue()


def _add_years(day: datetime, years: int) -> datetime:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


async def _person(session: AsyncSession, curp: str) -> Person:
    person = await persons.get_by_curp(session, curp)
    if person is None:
        raise NotFound("no hay ninguna persona registrada con esa CURP")
    return person


async def _hold_person(session: AsyncSession, curp: str) -> None:
    """Issuances for one person one after the other, until the transaction ends (PostgreSQL:
    a named advisory lock; SQLite, which ignores FOR UPDATE: the database's write lock, taken
    before the reads the issuance depends on)."""
    await locks.hold(session, f"credentials:person:{curp}", "credentials")


async def _current(session: AsyncSession, curp: str, *, lock: bool = False) -> Credential | None:
    stmt = select(Credential).where(
        Credential.person_curp == curp, Credential.status.not_in(("revoked", "superseded"))
    )
    if lock:
        # populate_existing: a card this session read before taking the lock is read again,
        # not served stale from the identity map.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


def _raced(curp: str, asked_for: Credential | None, now: Credential | None) -> str:
    """The loser of two issuances at once: the card it meant to replace was replaced (or one
    was issued) by the other while it waited. Repeating it would void the card just made, so
    the desk is told to look at the person's cards first."""
    made = (
        f"la credencial {now.credential_id} (núm. {now.sequence})"
        if now is not None
        else "su credencial vigente"
    )
    replaced = (
        f"reemplazó la credencial {asked_for.credential_id} por {made}"
        if asked_for is not None
        else f"expidió {made}"
    )
    return (
        f"otra expedición para esta persona, al mismo tiempo, {replaced}: consulte sus "
        f"credenciales (GET /api/v1/persons/{curp}/credentials) antes de expedir otra; "
        "repetir esta solicitud reemplazaría la que se acaba de expedir"
    )


async def _last(session: AsyncSession, curp: str) -> Credential | None:
    """The person's latest card, whatever its state."""
    stmt = (
        select(Credential)
        .where(Credential.person_curp == curp)
        .order_by(Credential.sequence.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _event(row: Credential, actor: str, now: datetime, note: str | None) -> CredentialEvent:
    return CredentialEvent(credential_pk=row.id, at=now, actor=actor, status=row.status, note=note)


async def report_lost(
    session: AsyncSession, signer: Signer, ring: Keyring, config: CredentialConfig,
    caller: Caller, holder_curp: str | None = None,
) -> CredentialRead:  # fmt: skip
    """A citizen reports their card lost (a reissue: the old card void at once), or, with
    `holder_curp`, the card of a minor they answer for today (they carry it)."""
    curp = caller.principal.curp or ""
    if holder_curp is not None and holder_curp != curp:
        check_curp(holder_curp)
        caller = await guardians.acting_for(session, caller, holder_curp)
        curp = holder_curp
    return await issue(session, signer, ring, config, curp, IssueReason.LOST, caller)


async def issue(
    session: AsyncSession,
    signer: Signer,
    ring: Keyring,
    config: CredentialConfig,
    curp: str,
    reason: IssueReason,
    caller: Caller,
    *,
    enrolled: bool = False,
    note: str | None = None,
) -> CredentialRead:
    """Issue a card. A first card comes only from a completed enrollment (`enrolled`, which
    enrollment.service.complete passes) and is refused when the person already has a current
    one; a reissue (loss, damage, renewal, changed data) supersedes the current card in the
    same transaction. After a revocation (one made by mistake) only a supervisor issues a new
    card, reason `reinstatement` with a `note` saying why; the revoked card stays revoked.

    Two issuances for one person at once run one after the other (`_hold_person`), and the
    one that finds the current card is no longer the card it was asked to replace (the other
    replaced it meanwhile) is a 409 to repeat, not a second reissue nor a "nothing to
    replace"."""
    check_curp(curp)
    await caller.allow(
        Permission.CREDENTIAL_ISSUE, "credentials:credential:issue", "credential", person_curp=curp
    )
    if caller.principal.role.value == "citizen" and reason is not IssueReason.LOST:
        raise Forbidden("desde su página, una persona solo puede reponer una tarjeta extraviada")
    note = (note or "").strip() or None
    reinstating = reason is IssueReason.REINSTATEMENT
    if reinstating:
        # Undoing a revocation is the supervisor's, as revoking is.
        await caller.allow(
            Permission.CREDENTIAL_REVOKE, "credentials:credential:issue", "credential",
            person_curp=curp,
        )  # fmt: skip
        if note is None or len(note) < 3:
            raise InvalidInput.on(
                "note", "obligatoria con reinstatement: diga por qué se expide una credencial "
                "nueva después de la revocación (de 3 a 300 caracteres)",
            )  # fmt: skip
    if note is not None and len(note) > 300:
        raise InvalidInput.on("note", "de 300 caracteres como máximo")
    if reason is IssueReason.FIRST and not enrolled:
        # The checks a first card stands on (documents, photo, fingerprints, the duplicate
        # review) are the enrollment's: issuing one apart from it would skip them all.
        raise Conflict(
            "la primera credencial se expide al completar el registro en un módulo "
            "(documentos, fotografía y huellas): POST /api/v1/enrollment/enrollments",
            [FieldProblem("reason", "first solo al completar un registro")],
        )
    person = await _person(session, curp)
    asked_for = await _current(session, curp)  # the card this request means to replace
    await _hold_person(session, curp)
    now = utcnow()
    previous = await _current(session, curp, lock=True)
    if previous is not None and reason is IssueReason.FIRST:
        raise Conflict(
            "la persona ya tiene una credencial vigente; para reponerla indique el motivo "
            "(lost, damaged, renewal o update)"
        )
    if (asked_for and asked_for.credential_id) != (previous and previous.credential_id):
        # Another issuance for this person ended while this one waited: it replaced the card
        # this one was asked to replace. Issuing again would void a card just made.
        if previous is None:  # revoked (or voided) meanwhile: no issuance to repeat over
            assert asked_for is not None
            raise Conflict(
                f"la credencial {asked_for.credential_id} cambió de estado mientras se "
                f"expedía su reposición (ya no es vigente): consulte las credenciales de la "
                f"persona (GET /api/v1/persons/{curp}/credentials) antes de expedir otra"
            )
        raise Conflict(_raced(curp, asked_for, previous))
    if previous is not None and previous.status == "suspended":
        # A reissue would void the suspended card and hand over an active one: the
        # suspension would be lifted by whoever asks (the holder, an operator).
        raise Conflict(
            f"la credencial vigente {previous.credential_id} está suspendida: no se repone "
            "mientras lo esté, la pida quien la pida (una reposición levantaría la "
            "suspensión); un supervisor debe reactivarla primero",
            [FieldProblem("reason", f"credencial {previous.credential_id} suspendida")],
        )
    revoked: Credential | None = None
    if reinstating:
        if previous is not None:
            raise Conflict(
                f"la credencial {previous.credential_id} está vigente "
                f"({status_name(previous.status)}): para reponerla indique el motivo "
                "(lost, damaged, renewal o update)",
                [FieldProblem("reason", "reinstatement solo después de una revocación")],
            )  # fmt: skip
        revoked = await _last(session, curp)
        if revoked is None or revoked.status != Status.REVOKED:
            raise Conflict(
                "la persona no tiene una credencial revocada: la primera se expide al "
                "completar el registro en un módulo",
                [FieldProblem("reason", "reinstatement solo después de una revocación")],
            )  # fmt: skip
    elif previous is None and reason is not IssueReason.FIRST:
        # A reissue replaces a card: without one it would be a first card that skipped
        # enrollment (documents, photo, fingerprints, duplicate review).
        last = await _last(session, curp)
        if last is not None and last.status == Status.REVOKED:
            raise Conflict(
                f"la última credencial ({last.credential_id}) fue revocada: no se repone; un "
                "supervisor puede expedir una nueva con el motivo reinstatement y una nota "
                "que diga por qué",
                [FieldProblem("reason", f"credencial {last.credential_id} revocada")],
            )  # fmt: skip
        raise Conflict("no hay una credencial vigente que reponer")
    sequence = (
        await session.scalar(
            select(func.coalesce(func.max(Credential.sequence), 0)).where(
                Credential.person_curp == curp
            )
        )
        or 0
    ) + 1
    raw_id = os.urandom(10)
    cred_id = credential_id_text(raw_id)
    face, face_format = None, None
    if config.qr_face:
        photo = await photos.stored_photo(session, ring, curp)
        if photo is not None:
            face, face_format = _face_thumbnail(photo.data), "webp"
    claims = CardClaims(
        issuer=config.issuer, holder=holder_of(person), credential_id=raw_id, sequence=sequence,
        kind=CardKind.PLASTIC, issued_at=now, not_before=now,
        expires_at=_add_years(now, config.validity_years), face=face, face_format=face_format,
    )  # fmt: skip
    qr_text, kid = await signer.sign_text(to_cbor(claims))
    if face is not None and not render.signed_qr_fits(qr_text):
        # The face (optional, off by default) made the QR too big for the card's back even at
        # its smallest modules (long names, a detailed photo): the card goes without it.
        claims = replace(claims, face=None, face_format=None)
        qr_text, kid = await signer.sign_text(to_cbor(claims))
    if previous is not None:
        previous.status, previous.superseded_by = "superseded", cred_id
        previous.status_changed_at, previous.status_changed_by = now, caller.actor
        previous.digital_active = False
        session.add(_event(previous, caller.actor, now, f"reposición: {reason.value}"))
        await session.flush()  # the old card leaves the "current" index before the new enters
    row = Credential(
        credential_id=cred_id, person_curp=curp, sequence=sequence, status="issued",
        digital_active=True, reason=reason.value, kid=kid.hex(), qr_text=qr_text,
        link_code=new_link_code(), issued_at=now,
        expires_at=claims.expires_at, issued_by=caller.actor, status_changed_at=now,
        status_changed_by=caller.actor, superseded_by=None,
    )  # fmt: skip
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # another operator issued this person's card at the same moment
        raise Conflict(_raced(curp, asked_for, None)) from None
    said = f"{reason.value}: {note}"[:300] if note else reason.value
    session.add(_event(row, caller.actor, now, said))
    detail: dict[str, Any] = {
        "sequence": sequence, "reason": reason.value,
        "supersedes": previous.credential_id if previous else None,
    }  # fmt: skip
    if note is not None:
        detail["note"] = note
    if revoked is not None:
        detail["after_revoked"] = revoked.credential_id
    await caller.record(
        "credentials:credential:issue", "credential", person_curp=curp, subject_id=cred_id,
        within=session, detail=detail,
    )  # fmt: skip
    return _read(row)


async def _gate(caller: Caller, permission: Permission, action: str, subject_id: str) -> None:
    """Refuse (and record) before any lookup when the role lacks the permission outright,
    so that a caller without it learns nothing, not even whether the card exists."""
    if not caller.principal.may(permission):
        await caller.allow(permission, action, "credential", subject_id=subject_id)


async def _by_id(session: AsyncSession, credential_id: str, *, lock: bool = False) -> Credential:
    if not _CREDENTIAL_ID.fullmatch(credential_id):
        raise InvalidInput.on("credential_id", "no es un identificador de credencial")
    stmt = select(Credential).where(Credential.credential_id == credential_id)
    if lock:
        # SQLite ignores FOR UPDATE: without its write lock taken before the read, two changes
        # at once both read the old state and the last write wins (a revocation undone by a
        # suspension, a reissue lifting a suspension). PostgreSQL: the row lock does it.
        await locks.hold(session, f"credentials:card:{credential_id}", "credentials")
        # Read again even if this session read the card before (the print batches' checks
        # do): the identity map would serve the state from before the lock.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound("no hay ninguna credencial con ese identificador")
    return row


async def list_for_person(session: AsyncSession, curp: str, caller: Caller) -> list[CredentialRead]:
    check_curp(curp)
    await caller.allow(
        Permission.CREDENTIAL_READ, "credentials:credential:list", "credential", person_curp=curp
    )
    rows = await session.scalars(
        select(Credential).where(Credential.person_curp == curp).order_by(Credential.sequence)
    )
    found = [_read(r) for r in rows]
    await caller.record("credentials:credential:list", "credential", person_curp=curp)
    return found


async def change_status(
    session: AsyncSession, credential_id: str, change: StatusChange, caller: Caller,
    *, at_module: bool = False,
) -> CredentialRead:  # fmt: skip
    """Suspend, reactivate (`active`) or revoke a card (credential:revoke). A reactivated
    card goes back to the step of the plastic's way it had reached; `at_module`: its print
    batch reached the module while it was suspended (enrollment/printing.py knows), so a
    printed card is ready for pickup. Superseded and revoked cards never change again. The
    plastic's own steps are `plastic_step`'s."""
    target = change.status
    row = await _locked_for(session, credential_id, Permission.CREDENTIAL_REVOKE, target, caller)
    if row.status in ("revoked", "superseded"):
        raise Conflict(f"la credencial está {status_name(row.status)}: ya no cambia de estado")
    if target == "active":
        if row.status != "suspended":
            raise Conflict("solo una credencial suspendida puede reactivarse")
        last = await session.scalar(
            select(CredentialEvent.status)
            .where(CredentialEvent.credential_pk == row.id, CredentialEvent.status != "suspended")
            .order_by(CredentialEvent.id.desc())
            .limit(1)
        )
        resumed = last or "issued"
        if at_module and resumed == "printed":
            resumed = "ready_for_pickup"
        row.status, row.digital_active = resumed, True
    else:
        if target == row.status:
            raise Conflict(f"la credencial ya está {status_name(target)}")
        row.status, row.digital_active = target, False
    return await _changed(session, row, target, change.note, caller)


async def plastic_step(
    session: AsyncSession, credential_id: str, step: PlasticStep, note: str | None,
    caller: Caller,
) -> CredentialRead:  # fmt: skip
    """issued -> printed -> ready_for_pickup -> delivered (credential:print). Only for the
    print batches and the delivery at the module (enrollment/printing.py), which check the
    batch, the module and who takes the card; no API route reaches it."""
    row = await _locked_for(session, credential_id, Permission.CREDENTIAL_PRINT, step, caller)
    if step not in _NEXT.get(row.status, frozenset()):
        raise Conflict(
            f"una credencial en estado «{status_name(row.status)}» no pasa a «{status_name(step)}»"
        )
    row.status = step
    return await _changed(session, row, step, note, caller)


async def _locked_for(
    session: AsyncSession, credential_id: str, permission: Permission, target: str,
    caller: Caller,
) -> Credential:  # fmt: skip
    """The card, locked for a change of state, once the caller may make it."""
    action = f"credentials:credential:{target}"
    await _gate(caller, permission, action, credential_id)
    row = await _by_id(session, credential_id, lock=True)
    await caller.allow(
        permission, action, "credential", person_curp=row.person_curp, subject_id=credential_id
    )
    return row


async def _changed(
    session: AsyncSession, row: Credential, target: str, note: str | None, caller: Caller
) -> CredentialRead:
    now = utcnow()
    row.status_changed_at, row.status_changed_by = now, caller.actor
    session.add(_event(row, caller.actor, now, note))
    await session.flush()
    await caller.record(
        f"credentials:credential:{target}", "credential", person_curp=row.person_curp,
        subject_id=row.credential_id, within=session, detail={"status": row.status},
    )  # fmt: skip
    return _read(row)


async def card_view(
    session: AsyncSession, ring: Keyring, config: CredentialConfig, row: Credential
) -> render.CardView:
    """What the card prints. The identity on its front (names, birth date, sex, nationality,
    blood type, donation decision) is what its QR signed at issuance, never the registry of
    the printing day: one card never states two things. A change since is told by the
    validation (`outdated`) and mended by a reissue with reason `update`. The entitlement and
    the unit, which the QR does not carry (reception asks them online), are the day's."""
    person = await _person(session, row.person_curp)
    signed = stored_claims(row.qr_text).holder
    photo = await photos.stored_photo(session, ring, row.person_curp)
    rights = entitlements(person, today_mx())
    unit = person.assigned_clues
    if unit:
        with contextlib.suppress(NotFound):  # a unit missing from the catalog: its key only
            unit = f"{unit} · {(await facilities.get_unit(session, unit)).name}"
    return render.CardView(
        given_names=signed.given_names,
        surnames=signed.surnames,
        curp=signed.curp, birth_date=signed.birth_date,
        birth_state=STATES.get(person.birth_state, person.birth_state).title(),
        sex=signed.sex, nationality=signed.nationality, blood_type=signed.blood_type,
        organ_donor=signed.organ_donor, institutions=[e.institution for e in rights],
        assigned_unit=unit, photo=photo.data if photo else None,
        signed_qr=row.qr_text, link=link_url(config, row.link_code),
        credential_id=row.credential_id, sequence=row.sequence, issued_at=row.issued_at,
        expires_at=row.expires_at,
    )  # fmt: skip


def new_link_code() -> str:
    """The second QR's code: 64 random bits in 13 base32 letters and digits (cards issued
    before 2026-12-02 carry 8, 40 bits: enough to hit a real card about once in 8,500 guesses
    at 130 million cards; 64 bits need ~10^11, and the page is rate-limited per address)."""
    return base64.b32encode(os.urandom(8)).decode().rstrip("=")


def link_url(config: CredentialConfig, code: str) -> str:
    """The second QR: a short link with an opaque code, in capitals so the QR can use the
    compact alphanumeric mode (hosts are case-insensitive; the route takes /U/)."""
    return f"{config.public_base_url.rstrip('/')}/U/{code}".upper()


async def card_image(
    session: AsyncSession, ring: Keyring, config: CredentialConfig,
    credential_id: str, side: str, caller: Caller,
) -> bytes:  # fmt: skip
    await _gate(caller, Permission.CREDENTIAL_READ, "credentials:card:render", credential_id)
    row = await _by_id(session, credential_id)
    await caller.allow(
        Permission.CREDENTIAL_READ, "credentials:card:render", "credential",
        person_curp=row.person_curp, subject_id=credential_id,
    )  # fmt: skip
    view = await card_view(session, ring, config, row)
    await caller.record(
        "credentials:card:render", "credential", person_curp=row.person_curp,
        subject_id=credential_id, detail={"side": side},
    )  # fmt: skip
    return render.card_png(view, side)


async def print_file(
    session: AsyncSession, ring: Keyring, config: CredentialConfig,
    credential_ids: list[str], caller: Caller,
) -> bytes:  # fmt: skip
    """The print file of a batch (PDF, two pages per card); the cards become `printed`.
    Only current, not yet printed cards go to print."""
    credential_ids = list(dict.fromkeys(credential_ids))  # a card listed twice prints once
    for c in credential_ids:
        await _gate(caller, Permission.CREDENTIAL_PRINT, "credentials:card:print", c)
    # Locked in one order (two batches sharing a card never wait on each other in a cycle).
    locked = {c: await _by_id(session, c, lock=True) for c in sorted(credential_ids)}
    rows = [locked[c] for c in credential_ids]
    for row in rows:
        await caller.allow(
            Permission.CREDENTIAL_PRINT, "credentials:card:print", "credential",
            person_curp=row.person_curp, subject_id=row.credential_id,
        )  # fmt: skip
        if row.status != "issued":
            raise Conflict(
                f"la credencial {row.credential_id} está {status_name(row.status)}: solo se "
                "imprime una expedida que aún no se imprimió"
            )
    # The front states what the QR signed at issuance: a card whose data the registry has
    # changed since (a blood type corrected) would come out of the press already wrong.
    behind = []
    for i, row in enumerate(rows):
        fields = outdated_fields(
            stored_claims(row.qr_text).holder, holder_of(await _person(session, row.person_curp))
        )
        if fields:
            behind.append((i, row, fields))
    if behind:
        said = "; ".join(
            f"la credencial {row.credential_id} (CURP {row.person_curp}): {_fields_text(fields)}"
            for _, row, fields in behind
        )
        raise Conflict(
            f"no se imprime nada: {len(behind)} tarjeta(s) muestran datos que el padrón ya "
            f"cambió ({said}). Repóngalas con el motivo actualización (update) antes de "
            "imprimir; la reposición sale en un lote posterior",
            [FieldProblem(f"credential_ids[{i}]",
                          f"{row.credential_id} desactualizada: {_fields_text(fields)}")
             for i, row, fields in behind],
        )  # fmt: skip
    views = [await card_view(session, ring, config, r) for r in rows]
    document = render.pdf(views)
    now = utcnow()
    for row in rows:
        row.status, row.status_changed_at, row.status_changed_by = "printed", now, caller.actor
        session.add(_event(row, caller.actor, now, f"lote de {len(rows)}"))
    await session.flush()
    for row in rows:
        await caller.record(
            "credentials:card:print", "credential", person_curp=row.person_curp,
            subject_id=row.credential_id, within=session,
        )  # fmt: skip
    return document


async def digital_card(
    session: AsyncSession, signer: Signer, config: CredentialConfig, caller: Caller,
    holder_curp: str | None = None,
) -> DigitalCardRead:  # fmt: skip
    """The citizen's digital card: signed now, with the entitlement in force now. With
    `holder_curp`, the card of a minor the citizen answers for (identity/guardians.py): a
    parent carries their children's cards on their phone."""
    if holder_curp is not None:
        check_curp(holder_curp)
    curp = caller.principal.curp
    if curp is None:
        await caller.record(
            "credentials:digital:refresh", "credential", person_curp=holder_curp, outcome="denied"
        )
        raise Forbidden("la credencial digital es de la persona que inicia sesión")
    if holder_curp is not None and holder_curp != curp:
        caller = await guardians.acting_for(session, caller, holder_curp)
        curp = holder_curp
    await caller.allow(
        Permission.CREDENTIAL_READ, "credentials:digital:refresh", "credential", person_curp=curp
    )
    row = await _current(session, curp)
    if row is None or not row.digital_active:
        raise NotFound("no tiene una credencial digital activa")
    now = utcnow()
    if row.expires_at <= now:
        # A statement signed now would expire before it is shown (its end is the card's);
        # 404 as for a suspended card, so the phone drops its saved copy (card.js).
        raise NotFound(
            f"la credencial venció el {row.expires_at:%d/%m/%Y}: ya no hay credencial digital "
            "hasta renovarla (reposición por renovación en un módulo)"
        )
    person = await _person(session, curp)
    rights = entitlements(person, today_mx())
    expires = min(now + timedelta(hours=config.statement_hours), row.expires_at)
    claims = CardClaims(
        issuer=config.issuer, holder=holder_of(person),
        credential_id=credential_id_bytes(row.credential_id), sequence=row.sequence,
        kind=CardKind.DIGITAL,
        issued_at=now, not_before=now, expires_at=expires,
        entitlement=Entitlement(now, tuple(e.institution_code for e in rights),
                                person.assigned_clues),
    )  # fmt: skip
    text, _ = await signer.sign_text(to_cbor(claims))
    await caller.record(
        "credentials:digital:refresh", "credential", person_curp=curp,
        subject_id=row.credential_id,
    )  # fmt: skip
    # The digital card is signed anew with the registry's data each time; the plastic keeps
    # what it was issued with: the page tells the holder when the two differ.
    return DigitalCardRead(
        credential_id=row.credential_id, sequence=row.sequence, qr=text,
        qr_svg=render.make_qr(text).svg_inline(scale=4, border=4, omitsize=True),
        statement_as_of=now, expires_at=expires, holder=_holder_read(claims.holder),
        entitlements=rights, assigned_clues=person.assigned_clues,
        link=link_url(config, row.link_code),
        plastic_outdated=outdated_fields(stored_claims(row.qr_text).holder, claims.holder),
    )  # fmt: skip


def _state_of(verified: Verified, row: dict[str, Any] | None) -> CardState:
    c = verified.claims
    if row is None or row["person_curp"] != c.holder.curp or row["sequence"] != c.sequence:
        return "unknown"
    if row["status"] in CURRENT:
        if c.kind is CardKind.DIGITAL and not row["digital_active"]:
            return "suspended"
        return "current"
    state: CardState = row["status"]
    return state


def _entitlements_of(affiliations: list[dict[str, Any]], on: date) -> list[EntitlementRead]:
    """Entitlements in force on a day, from affiliation rows of `read_by_curp`."""
    catalog = affiliation_catalog()
    out: list[EntitlementRead] = []
    for a in affiliations:
        if a["status"] != "active" or a["valid_from"] > on:
            continue
        if a["valid_to"] is not None and a["valid_to"] < on:
            continue
        entry = catalog.get(a["institution_code"])
        out.append(
            EntitlementRead(
                institution_code=a["institution_code"],
                institution=entry.short_name if entry else "?",
                valid_to=a["valid_to"],
            )
        )
    return out


def _invalid(failure: VerificationFailed) -> ValidationRead:
    return ValidationRead(
        verdict="invalid", reason=failure.reason.value, message=failure.message, card=None,
        kind=None, credential_id=None, sequence=None, expires_at=None, statement_as_of=None,
        holder=None, photo=None, entitlements=[], assigned_clues=None,
    )  # fmt: skip


async def _verified(text: str, keys: KeySet) -> Verified:
    """Verify the scanned text. A card whose key the signer's cached set lacks (put in
    service by another process since the set was read) gets a second try with the set
    reloaded: at most once a second (signing.RELOAD_SECONDS), not the cache's 30 s."""
    try:
        return verify(text, keys)
    except VerificationFailed as failure:
        if failure.reason is not Reason.UNKNOWN_KEY or not isinstance(keys, signing.SignerKeys):
            raise
        fresher = await keys.signer.fresher(keys)
        if fresher is None:
            raise
    return verify(text, fresher)


async def validate(
    reader: FastReader, keys: KeySet, ring: Keyring, text: str, caller: Caller
) -> ValidationRead:
    """Reception: verify the scanned QR, then answer from the registry what the card cannot
    say. Every validation is audited, refused ones too. The input is a signed card, so the
    answer cannot be used to look up a CURP nobody holds a card for.

    The hot path of the reception desk: two indexed statements through the FastReader (the
    card with the holder's photo; the person with affiliations), no ORM (bench/RESULTS.md)."""
    await caller.allow(Permission.CREDENTIAL_VALIDATE, "credentials:card:validate", "credential")
    try:
        verified = await _verified(text, keys)
    except VerificationFailed as failure:
        await caller.record(
            "credentials:card:validate", "credential", outcome="denied",
            detail={"reason": failure.reason.value},
        )  # fmt: skip
        return _invalid(failure)
    c = verified.claims
    curp, cred_id = c.holder.curp, credential_id_text(c.credential_id)
    found = await repository.scanned_card(reader, cred_id)
    row, affiliations = found if found is not None else (None, [])
    state = _state_of(verified, row)
    photo = None
    if row is not None and state != "unknown" and row["image_sealed"] is not None:
        data = photos.open_photo(bytes(row["image_sealed"]), ring, curp)
        photo = f"data:{row['media_type']};base64,{base64.b64encode(data).decode()}"
    valid = state == "current"
    verdict = ("valid_as_of" if c.kind is CardKind.DIGITAL else "valid") if valid else "invalid"
    message = (
        "Credencial válida: coteje la fotografía con la persona."
        if valid
        else STATUS_MESSAGES[state]
    )
    # What the card states against the registry now: a change since its issuance (a blood
    # type corrected) makes the card outdated, though still the holder's valid card.
    registry = repository.holder_now(row) if valid and row is not None else None
    outdated = outdated_fields(c.holder, registry) if registry is not None else []
    if outdated:
        message += _outdated_note(c.kind, outdated)
    detail: dict[str, Any] = {"card": state}
    if outdated:
        detail["outdated"] = outdated
    await caller.record(
        "credentials:card:validate", "credential", person_curp=curp, subject_id=cred_id,
        outcome="success" if valid else "denied", detail=detail,
    )  # fmt: skip
    return ValidationRead(
        verdict=verdict, reason=None if valid else state, message=message, card=state,
        kind="digital" if c.kind is CardKind.DIGITAL else "plastic",
        credential_id=cred_id, sequence=c.sequence, expires_at=c.expires_at,
        statement_as_of=c.entitlement.as_of if c.entitlement else None,
        holder=_holder_read(c.holder), photo=photo,
        entitlements=_entitlements_of(affiliations, today_mx()) if row else [],
        assigned_clues=row["assigned_clues"] if row else None, outdated=outdated,
    )  # fmt: skip


def _outdated_note(kind: CardKind, fields: list[str]) -> str:
    said = _fields_text(fields)
    if kind is CardKind.DIGITAL:
        return (
            f" Esta credencial digital muestra datos que el padrón ya cambió ({said}): que la "
            "persona la actualice con conexión; si su tarjeta impresa también los muestra, "
            "debe reponerse con el motivo actualización (update)."
        )
    return (
        f" La tarjeta muestra datos que el padrón ya cambió ({said}): debe reponerse con el "
        "motivo actualización (update)."
    )


async def public_validate(
    reader: FastReader, keys: KeySet, text: str, audit: AuditLog
) -> PublicValidationRead:
    """Anyone: valid or not and whether the card is current; nothing personal in the answer,
    rate-limited by the adapter. A check of a card the registry knows is an anonymous entry
    in its holder's "who looked at my data" (as opening the card's second QR is)."""
    try:
        verified = await _verified(text, keys)
    except VerificationFailed as failure:
        return PublicValidationRead(
            verdict="invalid", reason=failure.reason.value, message=failure.message, card=None
        )
    credential_id = credential_id_text(verified.claims.credential_id)
    found = await repository.scanned_card(reader, credential_id)
    state = _state_of(verified, found[0] if found else None)
    if found is not None:
        await audit.record(
            AuditEntry(
                actor="anonimo",
                role="public",
                action="credentials:credential:public-validate",
                subject_type="credential",
                person_curp=found[0]["person_curp"],
                subject_id=credential_id,
                purpose="validacion publica",
                detail={"state": state},
            )
        )
    if state == "current":
        verdict = "valid_as_of" if verified.claims.kind is CardKind.DIGITAL else "valid"
        return PublicValidationRead(
            verdict=verdict, reason=None, message="Credencial válida y vigente.", card="current"
        )
    if state == "unknown":
        return PublicValidationRead(
            verdict="invalid", reason="unknown", message=STATUS_MESSAGES["unknown"], card="unknown"
        )
    # Suspended, revoked and superseded answer alike (issue 4: valid or not, current or not);
    # the state itself is the staff variant's (`validate`) and the holder's audit entry's.
    return PublicValidationRead(
        verdict="invalid", reason=PUBLIC_NOT_CURRENT, message=PUBLIC_NOT_CURRENT_MESSAGE,
        card="not_current",
    )  # fmt: skip


class LinkNotCurrent(NotFound):
    """The second QR of a card we issued that is no longer current (replaced, revoked)."""


async def link_target(
    session: AsyncSession, code: str, audit: AuditLog
) -> tuple[list[int], Person | None]:
    """The second QR's page: the holder's institutions in force and the person (for the
    registered address). The page shows units only, never who the holder is; still, it reads
    the person's affiliations and address, so each opening is an audit entry (anonymous: the
    link is printed on the card, whoever holds the card may open it)."""
    if not re.fullmatch(r"[A-Z2-7]{8}|[A-Z2-7]{13}", code.upper()):
        raise NotFound("enlace desconocido")
    row = await session.scalar(select(Credential).where(Credential.link_code == code.upper()))
    if row is None:
        raise NotFound("enlace desconocido o de una credencial que ya no es vigente")
    if row.status not in CURRENT:  # a real card, void: its holder is not guessing codes
        raise LinkNotCurrent("enlace desconocido o de una credencial que ya no es vigente")
    person = await persons.get_by_curp(session, row.person_curp)
    if person is None:
        raise NotFound("enlace desconocido")
    await audit.record(
        AuditEntry(
            actor="anonimo", role="public", action="credentials:link:open",
            subject_type="credential", person_curp=person.curp,
            subject_id=row.credential_id, purpose="unidades cercanas",
        )
    )  # fmt: skip
    return [e.institution_code for e in entitlements(person, today_mx())], person


async def rotate_key_at_shell(
    session: AsyncSession, ring: Keyring, alg: int, who: revocation.Operator
) -> str:
    """`salud credentials rotate-key`: as `rotate_key`, recorded as every administration
    command is (actor `cli:<user>`, with the reason)."""
    kid = await signing.rotate(session, ring, f"cli:{who.name}", alg)
    revocation.record_admin(session, who, "credentials:key:rotate", "signing_key", kid)
    return kid


async def withdraw_key_at_shell(
    session: AsyncSession, kid: str, who: revocation.Operator
) -> tuple[str, bool]:
    """`salud credentials withdraw-key`: a compromised key (its kid in hex or base64url)
    leaves the published set, recorded as every administration command is (actor
    `cli:<user>`, with the reason). (the kid in hex, whether it was the key in service)."""
    hex_kid = signing.kid_hex(kid)
    in_service = await signing.withdraw(session, hex_kid)
    revocation.record_admin(session, who, "credentials:key:withdraw", "signing_key", hex_kid)
    return hex_kid, in_service


async def rotate_key(session: AsyncSession, ring: Keyring, alg: int, caller: Caller) -> str:
    """Retire the key in service and put a new one in service (audited)."""
    await caller.allow(Permission.SIGNING_KEY_MANAGE, "credentials:key:rotate", "signing_key")
    kid = await signing.rotate(session, ring, caller.actor, alg)
    await caller.record(
        "credentials:key:rotate", "signing_key", subject_id=kid, within=session,
        detail={"alg": alg},
    )  # fmt: skip
    return kid
