"""Pure transforms from raw CRM records to the canonical Arrow tables (no I/O)."""

from etl.transform import salesmanago, salesnexus
from etl.transform.salesmanago import RAW_CONTACT, split_page
from etl.transform.salesnexus import CatalogField, FieldCatalog
from etl.transform.schemas import (
    ACTIVITIES,
    CONTACTS,
    PROPERTIES,
    SALES,
    SCHEMAS,
    TABLES,
    TAGS,
    TIMESTAMP,
)

__all__ = [
    "ACTIVITIES",
    "CONTACTS",
    "PROPERTIES",
    "RAW_CONTACT",
    "SALES",
    "SCHEMAS",
    "TABLES",
    "TAGS",
    "TIMESTAMP",
    "CatalogField",
    "FieldCatalog",
    "salesmanago",
    "salesnexus",
    "split_page",
]
