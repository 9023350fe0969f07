"""Exit codes of ``crm-etl``; the README documents the same table."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: please report it with the log
    USAGE = 2  # bad command line, invalid spec or input file
    CREDENTIALS = 3  # credentials missing (env var) or refused by the CRM
    CRM_ERROR = 4  # the CRM refused a call (limit, invalid parameter, ...)
    PARTIAL = 5  # finished, but some rows were rejected (see rejects.csv)
    RESUMABLE = 75  # stopped early (retry budget exhausted, a signal); state saved: --resume
