"""The print queue and delivery: batches of cards per module, their print file, shipping,
reception at the module (the people are told their card is ready), and delivery after an
identity check. A batch not received by its due day is overdue.

    created --(print file)--> printed --> shipped --> received
    cards:   issued  -------> printed ---------------> ready_for_pickup --> delivered"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.context import Caller
from salud.access.permissions import Permission
from salud.credentials import service as credentials
from salud.credentials.schemas import CredentialRead, StatusChange
from salud.enrollment import repository
from salud.enrollment.booking import check_runs_module, module, new_folio
from salud.enrollment.models import Notification, PrintBatch, PrintBatchCard, RegistrationModule
from salud.enrollment.schemas import (
    BATCH_STATUS_WORDS,
    BatchCardRead,
    BatchCreate,
    BatchRead,
    BatchStatus,
    DeliveryIn,
    IdentityCheck,
    in_words,
)
from salud.enrollment.service import Issuance
from salud.errors import Conflict, Forbidden, InvalidInput, NotFound
from salud.identity import guardians
from salud.identity import repository as persons
from salud.kit.ages import is_minor
from salud.kit.clock import today_mx, utcnow

# Printing and shipping take at most three weeks, so the card waits at the module before the
# pickup window (four to six weeks after the visit) opens.
BATCH_DUE_DAYS = 21
_NEXT = {"printed": "shipped", "shipped": "received"}


def _read(b: PrintBatch, m: RegistrationModule, cards: list[BatchCardRead]) -> BatchRead:
    overdue = b.status != "received" and b.due_on < today_mx()
    return BatchRead(
        code=b.code, module_code=m.code, status=BatchStatus(b.status), card_count=b.card_count,
        due_on=b.due_on, overdue=overdue, created_at=b.created_at, printed_at=b.printed_at,
        shipped_at=b.shipped_at, received_at=b.received_at, cards=cards,
    )  # fmt: skip


async def _cards(session: AsyncSession, b: PrintBatch) -> list[BatchCardRead]:
    return [
        BatchCardRead(
            credential_id=c.credential_id,
            person_curp=c.person_curp,
            card_status=s,
            delivered_at=c.delivered_at,
            delivered_by=c.delivered_by,
            delivered_to=c.delivered_to,
            # A card still `printed` in a received batch was suspended on the way and since
            # reactivated: it is at the module all the same (deliver makes it ready first).
            deliverable=s == "ready_for_pickup" or (s == "printed" and b.status == "received"),
        )
        for c, s in await repository.batch_cards(session, b.id)
    ]


async def _record_holders(
    session: AsyncSession, caller: Caller, action: str, curps: Iterable[str]
) -> None:
    """One entry per person whose card the answer lists (CURP, who took it), in the
    change's transaction, as `get_batch` records its readers."""
    scoped = caller if caller.within is not None else replace(caller, within=session)
    await scoped.record_persons(action, dict.fromkeys(curps))


async def _batch(
    session: AsyncSession, code: str, caller: Caller, action: str
) -> tuple[PrintBatch, RegistrationModule]:
    await caller.allow(Permission.CREDENTIAL_PRINT, action, "print-batch", subject_id=code)
    b = await repository.batch_by_code(session, code, lock=True)
    if b is None:
        raise NotFound(f"no hay un lote con la clave {code}")
    m = await repository.module_by_id(session, b.module_id)
    await check_runs_module(caller, m)  # a batch carries personal data: its module's staff only
    return b, m


async def create_batch(session: AsyncSession, data: BatchCreate, caller: Caller) -> BatchRead:
    """Gather the module's issued cards not yet in a batch (first cards and reissues)."""
    await caller.allow(Permission.CREDENTIAL_PRINT, "enrollment:batch:create", "print-batch")
    m = await repository.module_by_code(session, data.module_code, lock=True)
    if m is None:
        raise NotFound(f"no hay un módulo con la clave {data.module_code}")
    await check_runs_module(caller, m)
    # The module row's lock makes two batches formed at once wait for each other, so a card
    # lands in one of them (the second finds nothing left) instead of failing on a duplicate.
    found = await repository.cards_to_print(session, m.id, data.limit)
    if not found:
        raise Conflict(f"no hay tarjetas por imprimir del módulo {m.code}")
    now = utcnow()
    b = PrintBatch(
        code=new_folio(f"L{m.state}-", 8), module_id=m.id, status="created",
        card_count=len(found), due_on=today_mx() + timedelta(days=BATCH_DUE_DAYS),
        created_at=now, created_by=caller.actor,
    )  # fmt: skip
    session.add(b)
    await session.flush()
    for credential_id, curp in found:
        session.add(PrintBatchCard(batch_id=b.id, credential_id=credential_id, person_curp=curp))
    await session.flush()  # a card already in another batch fails here (unique credential_id)
    await caller.record(
        "enrollment:batch:create", "print-batch", subject_id=b.code, within=session,
        detail={"cards": len(found), "module": m.code},
    )  # fmt: skip
    cards = await _cards(session, b)
    await _record_holders(
        session, caller, "enrollment:batch:create", (c.person_curp for c in cards)
    )
    return _read(b, m, cards)


async def print_file(session: AsyncSession, issuance: Issuance, code: str, caller: Caller) -> bytes:
    """The batch's PDF (the credential's renderer); the batch and its cards become printed.
    Produced once: the print shop keeps the file (a reprint is a reissue of the card)."""
    b, _ = await _batch(session, code, caller, "enrollment:batch:print")
    if b.status != "created":
        said = in_words(BATCH_STATUS_WORDS, b.status)
        raise Conflict(f"el lote {code} ya se imprimió (está {said})")
    # A card superseded or revoked since the batch was formed is not printed.
    cards = await repository.batch_cards(session, b.id)
    ids = [c.credential_id for c, s in cards if s == "issued"]
    for card, status in cards:
        if status != "issued":  # leaves the batch: if reactivated, a later batch takes it
            await session.delete(card)
    b.card_count = len(ids)
    if not ids:
        raise Conflict(f"ninguna tarjeta del lote {code} sigue vigente para imprimirse")
    document = await credentials.print_file(session, issuance.ring, issuance.config, ids, caller)
    b.status, b.printed_at = "printed", utcnow()
    await session.flush()
    await caller.record("enrollment:batch:print", "print-batch", subject_id=code, within=session)
    return document


def _ready_notice(curp: str, m: RegistrationModule, now: datetime) -> Notification:
    return Notification(
        person_curp=curp, kind="card_ready",
        message=(f"Su credencial de salud está lista. Recójala en {m.name}, {m.address}, "
                 f"de {m.opens_at} a {m.closes_at}, con una identificación."),
        created_at=now, sent_at=None,
    )  # fmt: skip


async def change_card_status(
    session: AsyncSession, credential_id: str, change: StatusChange, caller: Caller
) -> CredentialRead:
    """A supervisor suspends, reactivates or revokes a card (credentials.change_status). A
    card reactivated after its batch reached the module (the reception skipped it while it
    was suspended) is ready for pickup at once, and its holder is told, as the reception
    would have done."""
    card = await repository.batch_card(session, credential_id)
    # The batch locked: its reception, which skips a suspended card, cannot run in between.
    b = (
        await session.get(PrintBatch, card.batch_id, with_for_update=True)
        if card is not None
        else None
    )
    arrived = b is not None and b.status == "received"
    # Made ready by the reception before its suspension: its holder was told then.
    told = await repository.card_reached(session, credential_id, "ready_for_pickup")
    read = await credentials.change_status(
        session, credential_id, change, caller, at_module=arrived
    )
    ready = read.status == "ready_for_pickup" and change.status == "active" and not told
    if ready and b is not None and arrived:
        m = await repository.module_by_id(session, b.module_id)
        session.add(_ready_notice(read.person_curp, m, utcnow()))
        await session.flush()
    return read


async def advance(session: AsyncSession, code: str, step: str, caller: Caller) -> BatchRead:
    """printed -> shipped (print shop) -> received (the module; the cards become ready for
    pickup and each person is notified)."""
    b, m = await _batch(session, code, caller, f"enrollment:batch:{step}")
    if step not in _NEXT.values():  # the API's schema says so; a form may send anything
        raise InvalidInput.on("status", "indique shipped (enviado) o received (recibido)")
    if _NEXT.get(b.status) != step:
        said, wanted = in_words(BATCH_STATUS_WORDS, b.status), in_words(BATCH_STATUS_WORDS, step)
        raise Conflict(f"el lote {code} está {said}: no puede pasar a {wanted}")
    now = utcnow()
    if step == "received":
        for card, status in await repository.batch_cards(session, b.id):
            if status != "printed":  # revoked or superseded meanwhile: not handed over
                continue
            await credentials.plastic_step(
                session, card.credential_id, "ready_for_pickup", f"lote {code}", caller
            )
            session.add(_ready_notice(card.person_curp, m, now))
        b.received_at, b.received_by = now, caller.actor
    else:
        b.shipped_at = now
    b.status = step
    await session.flush()
    await caller.record(f"enrollment:batch:{step}", "print-batch", subject_id=code, within=session)
    cards = await _cards(session, b)
    await _record_holders(
        session, caller, f"enrollment:batch:{step}", (c.person_curp for c in cards)
    )
    return _read(b, m, cards)


async def deliver(
    session: AsyncSession, credential_id: str, data: DeliveryIn, caller: Caller
) -> BatchCardRead:
    """Hand the card over after checking who takes it (recorded by the operator)."""
    await caller.allow(
        Permission.CREDENTIAL_PRINT, "enrollment:card:deliver", "credential",
        subject_id=credential_id,
    )  # fmt: skip
    card = await repository.batch_card(session, credential_id)
    if card is None:
        raise NotFound("esa tarjeta no está en ningún lote")
    b = await session.get(PrintBatch, card.batch_id)
    assert b is not None
    await check_runs_module(caller, await repository.module_by_id(session, b.module_id))
    if b.status != "received":
        raise Conflict("el lote de esa tarjeta aún no llega al módulo")
    try:
        receiver = await _receiver(session, card.person_curp, data)
    except InvalidInput as exc:  # a refused hand-over is an attempt the auditors want to see
        refused = {"field": exc.problems[0].field if exc.problems else None,
                   "receiver": data.receiver_curp, "check": data.identity_check.value}  # fmt: skip
        await caller.record(
            "enrollment:card:deliver", "credential", person_curp=card.person_curp,
            subject_id=credential_id, outcome="denied", detail=refused,
        )  # fmt: skip
        raise
    if await repository.card_status(session, credential_id) == "printed":
        # Suspended while its batch was on the way, it was skipped at the reception; since
        # reactivated (back to `printed`), it is at the module all the same: ready first.
        await credentials.plastic_step(
            session, credential_id, "ready_for_pickup",
            f"lote {b.code}: recibido mientras estaba suspendida", caller,
        )  # fmt: skip
    note = f"entrega: {data.identity_check.value}; recibe {receiver}"
    read = await credentials.plastic_step(session, credential_id, "delivered", note, caller)
    now = utcnow()
    card.delivered_at, card.delivered_by = now, caller.actor
    card.identity_check, card.delivered_to = data.identity_check.value, receiver
    await session.flush()
    return BatchCardRead(
        credential_id=credential_id, person_curp=card.person_curp, card_status=read.status.value,
        delivered_at=now, delivered_by=caller.actor, delivered_to=receiver,
    )  # fmt: skip


async def _receiver(session: AsyncSession, holder_curp: str, data: DeliveryIn) -> str:
    """Who may take the card: the holder, checked with their ID or face; a minor's card goes
    to the mother, father or guardian linked in the registry (identity/guardians.py), checked
    with their ID. The CURP of whoever takes it is recorded."""
    holder = await persons.get_by_curp(session, holder_curp, affiliations=False)
    assert holder is not None  # a card is issued only to a registered person
    if is_minor(holder.birth_date, today_mx()):
        if data.identity_check is not IdentityCheck.GUARDIAN_ID:
            raise InvalidInput.on(
                "identity_check", "la credencial de un menor se entrega a su madre, padre o "
                "tutor vinculado, con su identificación (guardian_id)",
            )  # fmt: skip
        if data.receiver_curp is None:
            raise InvalidInput.on("receiver_curp", "indique la CURP de quien recibe al menor")
        if not await guardians.answers_for(session, holder, data.receiver_curp):
            raise InvalidInput.on(
                "receiver_curp", "no está vinculada como madre, padre o tutor de esta persona "
                "en el padrón; el personal del registro puede vincularla con sus documentos",
            )  # fmt: skip
        return data.receiver_curp
    if data.identity_check is IdentityCheck.GUARDIAN_ID:
        raise InvalidInput.on(
            "identity_check", "una persona mayor de edad recoge su propia credencial"
        )
    if data.receiver_curp not in (None, holder_curp):
        raise InvalidInput.on("receiver_curp", "la credencial la recoge su titular")
    return holder_curp


async def list_batches(
    session: AsyncSession, caller: Caller, module_code: str | None, overdue: bool
) -> list[BatchRead]:
    await caller.allow(Permission.CREDENTIAL_PRINT, "enrollment:batch:list", "print-batch")
    code = module_code or caller.principal.module_code
    if not code:
        raise Forbidden("su cuenta no está asignada a un módulo: indique el módulo")
    m = await module(session, code)
    await check_runs_module(caller, m)
    module_id = m.id
    found = await repository.batches(session, module_id, today_mx() if overdue else None)
    return [_read(b, await repository.module_by_id(session, b.module_id), []) for b in found]


async def get_batch(session: AsyncSession, code: str, caller: Caller) -> BatchRead:
    b, m = await _batch(session, code, caller, "enrollment:batch:read")
    cards = await _cards(session, b)
    await caller.record_persons("enrollment:batch:read", [c.person_curp for c in cards])
    return _read(b, m, cards)
