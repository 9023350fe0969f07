"""Extract: paging each CRM into batches of raw records."""

from etl.extract.prefetch import prefetch_pages
from etl.extract.streams import RawBatch, SalesManagoSource, SalesNexusSource

__all__ = ["RawBatch", "SalesManagoSource", "SalesNexusSource", "prefetch_pages"]
