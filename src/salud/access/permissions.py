"""Roles and the permissions each holds. Least privilege: a role gets only what its work needs.

Every endpoint names one Permission; the check lives in the service layer (`require`), so an
adapter that forgets it cannot leak data."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    PERSON_READ = "person:read"
    PERSON_SEARCH = "person:search"
    PERSON_CREATE = "person:create"
    PERSON_UPDATE = "person:update"
    PERSON_HISTORY = "person:history"
    # A minor's mother, father or guardian (identity/guardians.py): registry staff at a module
    # link one after checking documents; a supervisor ends one. No OAuth2 scope grants these:
    # a link hands over the minor's card.
    GUARDIAN_LINK = "guardian:link"
    GUARDIAN_END = "guardian:end"
    FACILITY_READ = "facility:read"
    AUDIT_READ = "audit:read"
    # An auditor's verdict on an emergency access or a self-declared care relationship: a
    # write, held by the auditor role alone (no OAuth2 scope grants it; `AuditEvent.read`
    # grants AUDIT_READ, which only reads).
    ACCESS_REVIEW = "access:review"
    ACCESS_LOG_READ = "person:access-log"  # "who looked at my data"
    DATA_REQUEST_FILE = "data-request:file"  # derechos ARCO: the person files
    DATA_REQUEST_MANAGE = "data-request:manage"  # the privacy office answers
    CARE_RECORD = "care:record"  # reception/clinician: the person is being cared for here
    CONSENT_MANAGE = "consent:manage"  # the person grants or revokes access
    EMERGENCY_OPEN = "emergency:open"  # break-the-glass
    ACCOUNT_MANAGE = "account:manage"
    CREDENTIAL_ISSUE = "credential:issue"  # issue a card, or reissue after a loss
    CREDENTIAL_READ = "credential:read"  # a person's cards and their states
    CREDENTIAL_PRINT = "credential:print"  # print files, and printed/ready/delivered
    CREDENTIAL_REVOKE = "credential:revoke"  # suspend, reactivate, revoke
    CREDENTIAL_VALIDATE = "credential:validate"  # reception: scanned card -> verdict
    SIGNING_KEY_MANAGE = "signing-key:manage"
    RECORD_READ = "record:read"  # the shared health record (FHIR)
    RECORD_WRITE = "record:write"
    MODULE_MANAGE = "enrollment:module:manage"  # open/close modules, assign operators
    CALENDAR_MANAGE = "enrollment:calendar:manage"  # phases and calendars of the drive
    APPOINTMENT_BOOK = "enrollment:appointment:book"  # book/cancel (a citizen: their own)
    APPOINTMENT_READ = "enrollment:appointment:read"  # a module's agenda
    ENROLL = "enrollment:enroll"  # the operator's work: documents, photo, fingerprints
    ENROLLMENT_APPROVE = "enrollment:approve"  # exceptions and the duplicate review queue
    ENROLLMENT_PROGRESS = "enrollment:progress"  # dashboard (aggregates, no personal data)


class Role(StrEnum):
    REGISTRATION_OPERATOR = "registration_operator"  # operador de módulo de registro
    SUPERVISOR = "supervisor"  # supervisor de módulo
    CLINICIAN = "clinician"  # personal clínico
    VERIFIER = "verifier"  # recepción: valida credenciales
    INSTITUTION_ADMIN = "institution_admin"  # administrador de institución
    AUDITOR = "auditor"
    SYSTEM_ADMIN = "system_admin"
    CITIZEN = "citizen"  # la persona misma (solo sus propios datos)
    CLIENT = "client"  # sistema de una institución: lo que sus scopes OAuth2 concedan


_P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.REGISTRATION_OPERATOR: frozenset(
        {
            _P.PERSON_READ,
            _P.PERSON_SEARCH,
            _P.PERSON_CREATE,
            _P.PERSON_UPDATE,
            # No GUARDIAN_LINK: an operator links a guardian only by completing the minor's
            # enrollment at their module (documents checked there); a link made apart, which
            # hands over a minor's card, is a supervisor's.
            _P.FACILITY_READ,
            _P.CREDENTIAL_ISSUE,
            _P.CREDENTIAL_READ,
            _P.CREDENTIAL_PRINT,
            _P.CREDENTIAL_VALIDATE,
            _P.APPOINTMENT_BOOK,
            _P.APPOINTMENT_READ,
            _P.ENROLL,
        }
    ),
    Role.SUPERVISOR: frozenset(
        {
            _P.PERSON_READ,
            _P.PERSON_SEARCH,
            _P.PERSON_CREATE,
            _P.PERSON_UPDATE,
            _P.PERSON_HISTORY,
            _P.GUARDIAN_LINK,
            _P.GUARDIAN_END,
            _P.FACILITY_READ,
            _P.CREDENTIAL_ISSUE,
            _P.CREDENTIAL_READ,
            _P.CREDENTIAL_PRINT,
            _P.CREDENTIAL_REVOKE,
            _P.CREDENTIAL_VALIDATE,
            _P.MODULE_MANAGE,
            # Not CALENDAR_MANAGE: the calendar and the phases are the whole country's, set
            # by the ministry (institution_admin), not by one of 1,700 supervisors.
            _P.APPOINTMENT_BOOK,
            _P.APPOINTMENT_READ,
            _P.ENROLL,
            _P.ENROLLMENT_APPROVE,
            _P.ENROLLMENT_PROGRESS,
        }
    ),
    Role.CLINICIAN: frozenset(
        {
            _P.PERSON_READ,
            _P.PERSON_SEARCH,
            _P.FACILITY_READ,
            _P.CARE_RECORD,
            _P.EMERGENCY_OPEN,
            _P.CREDENTIAL_VALIDATE,
            _P.RECORD_READ,
            _P.RECORD_WRITE,
        }
    ),
    Role.VERIFIER: frozenset(
        {_P.PERSON_READ, _P.FACILITY_READ, _P.CARE_RECORD, _P.CREDENTIAL_VALIDATE}
    ),
    Role.INSTITUTION_ADMIN: frozenset(
        {
            _P.FACILITY_READ,
            _P.ACCOUNT_MANAGE,
            _P.DATA_REQUEST_MANAGE,
            _P.PERSON_READ,
            _P.CALENDAR_MANAGE,
            _P.ENROLLMENT_PROGRESS,
        }
    ),
    Role.AUDITOR: frozenset(
        {_P.AUDIT_READ, _P.ACCESS_REVIEW, _P.ACCESS_LOG_READ, _P.PERSON_HISTORY, _P.FACILITY_READ}
    ),
    Role.SYSTEM_ADMIN: frozenset({_P.ACCOUNT_MANAGE, _P.FACILITY_READ, _P.SIGNING_KEY_MANAGE}),
    # A citizen reads only their own record: the service narrows PERSON_READ to self.
    Role.CITIZEN: frozenset(
        {
            _P.PERSON_READ,
            _P.PERSON_HISTORY,
            _P.ACCESS_LOG_READ,
            _P.FACILITY_READ,
            _P.DATA_REQUEST_FILE,
            _P.CONSENT_MANAGE,
            _P.CREDENTIAL_READ,  # their own cards and digital card
            _P.RECORD_READ,  # their own health record
            _P.CREDENTIAL_ISSUE,  # reissue of their own card after a loss
            _P.APPOINTMENT_BOOK,  # their own appointment
        }
    ),
}

# A machine client holds no permission by its role: only what its scopes grant.
ROLE_PERMISSIONS[Role.CLIENT] = frozenset()

STAFF_ROLES = frozenset(ROLE_PERMISSIONS) - {Role.CITIZEN, Role.CLIENT}
