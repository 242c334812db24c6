"""Who is asking: the principal every service call carries, and the permission check."""

from __future__ import annotations

from dataclasses import dataclass

from salud.access.permissions import ROLE_PERMISSIONS, Permission, Role
from salud.access.scopes import permissions_for
from salud.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # "account:42"
    username: str
    role: Role
    institution_code: int | None = None
    clues: str | None = None
    curp: str | None = None  # a citizen's own CURP
    module_code: str | None = None  # a registration module's operator or supervisor
    scopes: frozenset[str] = frozenset()  # a machine client's OAuth2 scopes

    @property
    def permissions(self) -> frozenset[Permission]:
        if self.role is Role.CLIENT:
            return permissions_for(self.scopes)
        return ROLE_PERMISSIONS[self.role]

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"el rol {self.role.value} no tiene el permiso {permission.value}")
