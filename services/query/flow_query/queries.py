"""The query service's SQL: read-only, each backed by an index of the schema."""

from sqlalchemy import text

__all__ = ["BALANCE_DAYS", "OUTCOME_BY_ID", "STATEMENT", "TRANSACTION_BY_ID"]

TRANSACTION_BY_ID = text(
    """SELECT t.id, t.branch, t.account, t.amount, t.debitcredit, t.eventcode, t.description, t.tracekey,
              t.details, t.dateref, t.acceptedat, t.createdat
       FROM flow.outcome o
       JOIN flow.transaction t ON t.id = o.id AND t.dateref = o.dateref  -- the dateref finds the partition
       WHERE o.id = :id"""
)

OUTCOME_BY_ID = text("SELECT id, tracekey, code, createdat FROM flow.outcome WHERE id = :id")

STATEMENT = text(
    """SELECT id, dateref, amount, debitcredit, eventcode, description, tracekey, createdat
       FROM flow.transaction
       WHERE branch = :branch AND account = :account AND dateref BETWEEN :from_ AND :to
       ORDER BY dateref, createdat, id"""
)

BALANCE_DAYS = text(
    """SELECT dateref, totaldebit, totalcredit, accumulateddebit, accumulatedcredit,
              accumulatedcredit - accumulateddebit AS balance, updatedat
       FROM flow.balance
       WHERE branch = :branch AND account = :account AND dateref BETWEEN :from_ AND :to
       ORDER BY dateref"""
)
