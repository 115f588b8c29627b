-- Running totals only grow: a busy account's accumulated debits and credits pass 10^13 in a normal
-- life, which numeric(15,2) could not hold (the batch failed, and its postings with it). The day
-- rows' totals are widened to numeric(38,2): reaching 10^36 takes 10^23 postings of the largest
-- amount. Widening a numeric with the same scale rewrites nothing.
--
-- The ledger's limits: a posting is at most 9,999,999,999,999.99 (flow.transaction.amount, numeric(15,2),
-- checked by ingest), and an account's balance at the end of every day stays within
-- ±999,999,999,999,999.99. The engine applies a batch under this constraint; a posting whose effect
-- would break it is rejected with R024 (flow_engine.apply.LEDGER_RULES names the constraint).
ALTER TABLE flow.balance
    ALTER COLUMN totaldebit TYPE numeric(38,2),
    ALTER COLUMN totalcredit TYPE numeric(38,2),
    ALTER COLUMN accumulateddebit TYPE numeric(38,2),
    ALTER COLUMN accumulatedcredit TYPE numeric(38,2),
    ADD CONSTRAINT balance_within_ledger_limit
        CHECK (abs(accumulatedcredit - accumulateddebit) <= 999999999999999.99);
