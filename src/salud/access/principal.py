"""Who is asking: the principal every service call carries, and the permission check."""

from __future__ import annotations

from dataclasses import dataclass

from salud.access.permissions import ROLE_PERMISSIONS, Permission, Role
from salud.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # "account:42"
    username: str
    role: Role
    institution_code: int | None = None
    clues: str | None = None
    curp: str | None = None  # a citizen's own CURP

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if permission not in ROLE_PERMISSIONS[self.role]:
            raise Forbidden(f"el rol {self.role.value} no tiene el permiso {permission.value}")
