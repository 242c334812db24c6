"""OAuth2 scopes of machine clients, in the SMART on FHIR form `context/Resource.access`
(SMART App Launch v1: `system/Patient.read`, `user/Observation.write`, `patient/*.read`),
and the permissions each grants. Scopes for the clinical record's resources are accepted
now and will grant its permissions when that domain exists."""

from __future__ import annotations

import re

from salud.access.permissions import Permission

_SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*)$")

_P = Permission
# FHIR resource type -> permissions for read and for write, over what exists today.
_GRANTS: dict[str, tuple[frozenset[Permission], frozenset[Permission]]] = {
    "Patient": (
        frozenset({_P.PERSON_READ, _P.PERSON_SEARCH}),
        frozenset({_P.PERSON_CREATE, _P.PERSON_UPDATE}),
    ),
    # Coverage is read-only (the registry's affiliations): its write scope grants nothing.
    "Coverage": (frozenset({_P.PERSON_READ}), frozenset()),
    "Location": (frozenset({_P.FACILITY_READ}), frozenset()),
    "Organization": (frozenset({_P.FACILITY_READ}), frozenset()),
    "AuditEvent": (frozenset({_P.AUDIT_READ}), frozenset()),
}
# Resource types the clinical record will serve (issue: the shared health record).
_KNOWN = frozenset(_GRANTS) | frozenset(
    {
        "Encounter", "Condition", "AllergyIntolerance", "MedicationRequest",
        "MedicationStatement", "Observation", "DiagnosticReport", "Procedure",
        "Immunization", "DocumentReference", "Practitioner", "PractitionerRole",
        "Appointment", "Consent",
    }
)  # fmt: skip


for _kind in _KNOWN - frozenset(_GRANTS):
    _GRANTS[_kind] = (frozenset({_P.RECORD_READ}), frozenset({_P.RECORD_WRITE}))


def check_scope(scope: str) -> str | None:
    """A reason the scope is not valid here, or None."""
    match = _SCOPE.match(scope)
    if match is None:
        return f"«{scope}» no tiene la forma contexto/Recurso.acceso (p. ej. system/Patient.read)"
    if match.group(1) == "patient":
        return f"«{scope}»: el contexto patient/ requiere el inicio de sesión de la persona"
    if match.group(1) == "user":
        # A user's scopes bound a signed-in user's reach (their own permissions and bases);
        # a system signing in with its credentials has no user, and took everyone's data.
        return (
            f"«{scope}»: el contexto user/ requiere el inicio de sesión de un usuario; "
            "un sistema usa system/"
        )
    if match.group(2) != "*" and match.group(2) not in _KNOWN:
        return f"«{scope}»: recurso desconocido"
    return None


def allows(scopes: frozenset[str], resource: str, write: bool) -> bool:
    """Whether the scopes cover this resource type for reading or writing (the clinical
    record's permissions are per type: `system/Observation.read` reads Observations only)."""
    for scope in scopes:
        match = _SCOPE.match(scope)
        wanted = ("*", "write" if write else "read")
        if match and match.group(2) in ("*", resource) and match.group(3) in wanted:
            return True
    return False


def permissions_for(scopes: frozenset[str]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for scope in scopes:
        match = _SCOPE.match(scope)
        if match is None:
            continue
        resource, access = match.group(2), match.group(3)
        for name, (read, write) in _GRANTS.items():
            # The audit log is the auditors': only a scope that names it grants reading it
            # (`system/*.read`, asked for $export, gave the whole country's log).
            if resource == name or (resource == "*" and name != "AuditEvent"):
                if access in ("read", "*"):
                    granted |= read
                if access in ("write", "*"):
                    granted |= write
    return frozenset(granted)
