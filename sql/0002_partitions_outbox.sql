-- flow.transaction partitioned by dateref, one partition a month, so the archive job can detach and
-- ship old months; the outcome of a posting learns its dateref (to find its partition); the callback
-- outbox, written in the same transaction as the effect it announces.

ALTER TABLE flow.transaction RENAME TO transaction_unpartitioned;
ALTER INDEX flow.transaction_pkey RENAME TO transaction_unpartitioned_pkey;
ALTER INDEX flow.transaction_account_dateref_idx RENAME TO transaction_unpartitioned_account_idx;
ALTER INDEX flow.transaction_tracekey_idx RENAME TO transaction_unpartitioned_tracekey_idx;

CREATE TABLE flow.transaction (
    id          uuid          NOT NULL,
    branch      text          NOT NULL,
    account     text          NOT NULL,
    amount      numeric(15,2) NOT NULL CONSTRAINT transaction_amount_positive CHECK (amount > 0),
    debitcredit varchar(1)    NOT NULL CONSTRAINT transaction_debitcredit_check CHECK (debitcredit IN ('D', 'C')),
    eventcode   integer       NOT NULL REFERENCES flow.event (code),
    description text,
    tracekey    uuid          NOT NULL,
    details     json,
    dateref     date          NOT NULL,
    acceptedat  timestamptz   NOT NULL,
    createdat   timestamptz   NOT NULL DEFAULT now(),
    -- A partitioned table's keys must hold the partition column; flow.outcome keeps ids unique.
    CONSTRAINT transaction_pkey PRIMARY KEY (id, dateref)
) PARTITION BY RANGE (dateref);
CREATE INDEX transaction_account_dateref_idx ON flow.transaction (branch, account, dateref, createdat, id);
-- No tracekey index here: flow.outcome's answers "which postings carry this tracekey", applied or not.

-- Native monthly partitions, named flow.transaction_pYYYYMM. Used where pg_partman is not installed;
-- harmless beside it (it skips months that already have a partition).
CREATE FUNCTION flow.create_transaction_partitions(first_month date, months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', first_month)::date;
    created integer := 0;
BEGIN
    FOR n IN 1..months LOOP
        IF to_regclass(format('flow.transaction_p%s', to_char(month, 'YYYYMM'))) IS NULL THEN
            EXECUTE format('CREATE TABLE flow.%I PARTITION OF flow.transaction FOR VALUES FROM (%L) TO (%L)',
                           'transaction_p' || to_char(month, 'YYYYMM'), month, (month + interval '1 month')::date);
            created := created + 1;
        END IF;
        month := (month + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

-- Keeps partitions ready ahead of time: pg_partman's maintenance where it manages the table,
-- otherwise native partitions from last month to three months ahead. The engine calls it at start
-- and hourly.
CREATE FUNCTION flow.maintain_transaction_partitions() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('partman.part_config') IS NOT NULL THEN
        EXECUTE 'SELECT partman.run_maintenance(''flow.transaction'')';
    ELSE
        PERFORM flow.create_transaction_partitions((date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date, 5);
    END IF;
END $$;

DO $$
DECLARE
    oldest date := (SELECT coalesce(min(dateref), (now() AT TIME ZONE 'UTC')::date) FROM flow.transaction_unpartitioned);
    first_month date := least(date_trunc('month', oldest)::date,
                              (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date);
BEGIN
    IF EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_partman') THEN
        CREATE SCHEMA IF NOT EXISTS partman;
        CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
        PERFORM partman.create_parent(p_parent_table := 'flow.transaction', p_control := 'dateref',
                                      p_type := 'native', p_interval := 'monthly', p_premake := 3,
                                      p_start_partition := to_char(first_month, 'YYYY-MM-DD'));
    ELSE
        PERFORM flow.create_transaction_partitions(first_month,
            (extract(year FROM age(date_trunc('month', now() AT TIME ZONE 'UTC'), first_month)) * 12
             + extract(month FROM age(date_trunc('month', now() AT TIME ZONE 'UTC'), first_month)))::integer + 4);
    END IF;
END $$;

INSERT INTO flow.transaction SELECT * FROM flow.transaction_unpartitioned;
DROP TABLE flow.transaction_unpartitioned;

-- The outcome row is written for every posting, so it is kept lean: status and message follow from
-- the code, and the content fingerprint is a 128-bit hash.
ALTER TABLE flow.outcome ADD COLUMN dateref date;
UPDATE flow.outcome o SET dateref = t.dateref FROM flow.transaction t WHERE t.id = o.id;
ALTER TABLE flow.outcome DROP COLUMN status, DROP COLUMN message;
ALTER TABLE flow.outcome ALTER COLUMN fingerprint TYPE uuid USING substr(fingerprint, 1, 32)::uuid;

-- Callbacks waiting for the relay to publish them on FlowCallback, one row per applied batch (a JSON
-- array of callback messages); a row is deleted once SNS accepted all of it. Each message carries a
-- messageid that is stable across retries, so consumers can dedupe.
CREATE TABLE flow.callback_outbox (
    seq       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    callbacks text        NOT NULL,
    createdat timestamptz NOT NULL DEFAULT now()
);
-- Short-lived rows: compressing them costs more than it saves.
ALTER TABLE flow.callback_outbox ALTER COLUMN callbacks SET STORAGE EXTERNAL;
