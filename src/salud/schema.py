"""Every table of the system, for Alembic and the model/migration drift check."""

from salud.access import models as access_models
from salud.credentials import models as credentials_models
from salud.enrollment import models as enrollment_models
from salud.facilities import models as facilities_models
from salud.identity import models as identity_models
from salud.records import models as records_models
from salud.storage.base import Base

metadata = Base.metadata

__all__ = [
    "access_models",
    "credentials_models",
    "enrollment_models",
    "facilities_models",
    "identity_models",
    "metadata",
    "records_models",
]
