-- Integrity the schema left to the code: outcome codes, outcome daterefs, the outbox's parallel arrays,
-- and a surrogate key nothing used. CHECKs are per-row expressions on rows the engine writes anyway (an
-- outcome per posting, an outbox row per batch, written three times): a few comparisons each, nothing
-- read, no lock, no index; under 0.2 µs a posting (measured on 500-posting batches), where the engine
-- spends about 35 µs of PostgreSQL's time. Applying this script holds flow.outcome,
-- flow.callback_outbox and flow.balance while it scans them (and rebuilds balance's key): seconds per
-- million rows, during which batches wait.

-- Codes are R and three digits (flow_rules.codes); new ones keep coming, so a pattern, not a list.
-- Every new outcome carries its posting's dateref (it finds the transaction's partition). Rows older
-- than sql/0002 had none: the applied ones get it from their transaction row (0002 did that once;
-- this repeats it for any written without one since). A rejected posting has no transaction row, and its message left the
-- queue long ago: its dateref is nowhere. Such rows keep a null: inventing a day would put a false
-- fact in the ledger, and deleting them would lose the posting's idempotency and its answer to
-- GET /v1/transactions/{id}. So the rule is a CHECK rather than NOT NULL (which cannot spare old
-- rows): PostgreSQL enforces it on every insert and update from now on, and it is validated here when
-- no null is left (every database made after 0002, and every new one). Where one is left, it stays
-- NOT VALID until those rows are removed or given a day, then:
--     ALTER TABLE flow.outcome VALIDATE CONSTRAINT outcome_dateref_present;
UPDATE flow.outcome o SET dateref = t.dateref
FROM flow.transaction t
WHERE o.dateref IS NULL AND t.id = o.id;
ALTER TABLE flow.outcome
    ADD CONSTRAINT outcome_code_format CHECK (code ~ '^R[0-9]{3}$'),
    ADD CONSTRAINT outcome_dateref_present CHECK (dateref IS NOT NULL) NOT VALID;
DO $$
BEGIN
    ALTER TABLE flow.outcome VALIDATE CONSTRAINT outcome_dateref_present;
EXCEPTION WHEN check_violation THEN
    RAISE NOTICE 'flow.outcome keeps rejected rows from before sql/0002 with no dateref: '
                 'outcome_dateref_present holds for new rows and stays NOT VALID for those';
END $$;

-- The outbox row of a batch lists its new outcomes (flow_engine.apply: _RECORD, _REFUSE, _QUEUE_CALLBACKS;
-- the relay's _KEEP_REST): ids, tracekeys and codes one per outcome, none null. balances and availables
-- are one per applied (R000) outcome, in order, or null: null until the batch's day rows are moved
-- (the row is inserted first, so a CHECK, never deferred, must allow it), and when nothing was
-- applied; availables also null when no account of the batch has a limit, never without balances.
-- Their elements may be null (no limit; figures of rows queued before sql/0008).
ALTER TABLE flow.callback_outbox
    ADD CONSTRAINT callback_outbox_one_per_outcome CHECK (
        cardinality(tracekeys) = cardinality(ids) AND cardinality(codes) = cardinality(ids)
        AND array_position(ids, NULL) IS NULL AND array_position(tracekeys, NULL) IS NULL
        AND array_position(codes, NULL) IS NULL),
    ADD CONSTRAINT callback_outbox_one_per_applied CHECK (
        (balances IS NULL OR cardinality(balances) = cardinality(array_positions(codes, 'R000')))
        AND (availables IS NULL OR (balances IS NOT NULL AND cardinality(availables) = cardinality(balances))));

-- flow.balance.id was never read: a day row is its account and day, already unique. That key becomes
-- the primary key, and the table loses a uuid per row, an index, and a write to it per new day row.
ALTER TABLE flow.balance
    DROP CONSTRAINT balance_account_day_key,
    DROP COLUMN id,
    ADD CONSTRAINT balance_pkey PRIMARY KEY (branch, account, dateref);
