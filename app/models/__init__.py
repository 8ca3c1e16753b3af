"""SQLModel tables and API schemas, one module per domain.

Importing this package registers every table on ``SQLModel.metadata`` (used by Alembic).
"""

from app.models.agency import Agency, AgencyKind
from app.models.client import ApiClient, ClientStatus

__all__ = ["Agency", "AgencyKind", "ApiClient", "ClientStatus"]
