"""crm-etl: bulk CRM data movement for SALESmanago and SalesNexus."""

__version__ = "0.1.0"
