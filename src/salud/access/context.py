"""The caller of a use case: who is asking, and the audit log every access goes to.

Services receive a Caller and call `allow` before touching personal data and `record` after;
a denied attempt is itself recorded. Adapters cannot skip this: the service functions that
read or write personal data take a Caller, not a bare session."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salud.access.audit import AuditEntry, AuditLog
from salud.access.audit_tx import record_at_commit
from salud.access.permissions import Permission, Role
from salud.access.principal import Principal
from salud.access.scopes import allows
from salud.errors import Forbidden

_P = Permission
# The registry's permissions, which a machine client holds through the Patient scopes.
_REGISTRY = frozenset({_P.PERSON_READ, _P.PERSON_SEARCH, _P.PERSON_HISTORY, _P.PERSON_CREATE,
                       _P.PERSON_UPDATE})  # fmt: skip
_WRITES = frozenset({_P.PERSON_CREATE, _P.PERSON_UPDATE, _P.RECORD_WRITE})


# What a parent or guardian may do for a minor they answer for (credentials/service.py
# refuses a citizen any reissue but a lost card's).
_FOR_WARDS = frozenset({_P.CREDENTIAL_READ, _P.CREDENTIAL_ISSUE})


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    audit: AuditLog
    purpose: str | None = None  # e.g. "atencion", "registro", "verificacion"
    reason: str | None = None  # break-the-glass justification, when there is one
    # A transaction every entry of this caller goes into (a FHIR transaction Bundle): then
    # nothing waits for the group-commit writer while the transaction holds the chain's lock.
    within: AsyncSession | None = None
    # With `within`, entries may be gathered here and appended together at the end of the
    # transaction (one append for a whole Bundle instead of one per entry).
    pending: list[AuditEntry] | None = None
    # Clinical bases already established in this unit of work (CURP -> basis or None).
    bases: dict[str, tuple[str, str | None] | None] | None = None
    # Minors this citizen answers for, each checked against the registry's link in this unit
    # of work (identity/guardians.py `acting_for`); never taken from a token or a form.
    wards: frozenset[str] = frozenset()

    @property
    def actor(self) -> str:
        return self.principal.username

    def _entry(
        self,
        action: str,
        subject_type: str,
        *,
        person_curp: str | None,
        subject_id: str | None,
        outcome: str,
        detail: dict[str, Any] | None,
    ) -> AuditEntry:
        p = self.principal
        return AuditEntry(
            actor=p.username,
            role=p.role.value,
            action=action,
            subject_type=subject_type,
            outcome=outcome,
            institution_code=p.institution_code,
            clues=p.clues,
            person_curp=person_curp,
            subject_id=subject_id,
            purpose=self.purpose,
            reason=self.reason,
            detail=detail,
        )

    async def allow(
        self,
        permission: Permission,
        action: str,
        subject_type: str,
        *,
        person_curp: str | None = None,
        subject_id: str | None = None,
        resource: str | None = None,
    ) -> None:
        """Raise Forbidden (and record the denial) unless the caller may do this. A citizen
        may only ever touch their own record, or that of a minor they answer for (`wards`).
        A machine client's scopes name resource types: the registry's person is the Patient
        (`resource`, by default for the person:* permissions), so `system/Coverage.read`,
        which also grants person:read for the person's Coverage, does not open the
        registry's own API."""
        p = self.principal
        own = p.role is not Role.CITIZEN or (
            person_curp is not None
            and (
                person_curp == p.curp
                # A ward opens the minor's card and reports it lost, nothing else of theirs.
                or (person_curp in self.wards and permission in _FOR_WARDS)
            )
        )
        scoped = True
        if p.role is Role.CLIENT:
            kind = resource or ("Patient" if permission in _REGISTRY else None)
            scoped = kind is None or allows(p.scopes, kind, permission in _WRITES)
        if p.may(permission) and own and scoped:
            return
        denial = self._entry(
            action,
            subject_type,
            person_curp=person_curp,
            subject_id=subject_id,
            outcome="denied",
            detail={"permission": permission.value},
        )
        if self.pending is not None:
            self.pending.append(denial)
        elif self.within is not None:
            record_at_commit(self.within, self.audit.key, [denial])
        else:
            await self.audit.record(denial)
        if not own:
            raise Forbidden("una persona solo puede consultar sus propios datos")
        if not scoped:
            raise Forbidden(f"los scopes del cliente no cubren {resource or 'Patient'}")
        raise Forbidden(f"el rol {p.role.value} no tiene el permiso {permission.value}")

    async def record(
        self,
        action: str,
        subject_type: str,
        *,
        person_curp: str | None = None,
        subject_id: str | None = None,
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
        within: AsyncSession | None = None,
    ) -> None:
        """Record an access. A change passes its session (`within`): the entry then commits
        with the change, in the same transaction, appended just before the commit."""
        entry = self._entry(
            action,
            subject_type,
            person_curp=person_curp,
            subject_id=subject_id,
            outcome=outcome,
            detail=detail,
        )
        if self.pending is not None and within in (None, self.within):
            self.pending.append(entry)
            return
        within = within or self.within
        if within is not None:
            record_at_commit(within, self.audit.key, [entry])
        else:
            await self.audit.record(entry)

    async def record_persons(self, action: str, curps: Iterable[str]) -> None:
        """One entry per person whose data a list or search disclosed."""
        entries = [
            self._entry(
                action, "person", person_curp=c, subject_id=None, outcome="success", detail=None
            )
            for c in curps
        ]
        if entries and self.pending is not None:
            self.pending.extend(entries)
        elif entries and self.within is not None:
            record_at_commit(self.within, self.audit.key, entries)
        elif entries:
            await self.audit.record_many(entries)
