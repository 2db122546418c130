"""The ledger: every call recorded, in SQLite by default or PostgreSQL at scale."""

from unwalled.ledger.store import AttemptRecord, Ledger, Record

__all__ = ["AttemptRecord", "Ledger", "Record"]
