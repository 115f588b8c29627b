-- Cheaper writes for the engine, which writes every posting three times (outcome, transaction,
-- day rows) and a callback for each.

-- Events are never deleted nor renumbered (every posting names one; deactivate instead), so
-- flow.transaction drops its foreign key: its per-row check took a KEY SHARE lock on the event row
-- for every posting, from every engine at once, all on the same few rows.
CREATE FUNCTION flow.refuse_event_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are never deleted nor renumbered: postings name them; deactivate the event instead'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER event_never_removed BEFORE DELETE OR UPDATE OF code ON flow.event
    FOR EACH ROW EXECUTE FUNCTION flow.refuse_event_removal();
CREATE TRIGGER event_never_truncated BEFORE TRUNCATE ON flow.event
    FOR EACH STATEMENT EXECUTE FUNCTION flow.refuse_event_removal();
DO $$
DECLARE
    fk text;
BEGIN
    FOR fk IN SELECT conname FROM pg_constraint
              WHERE conrelid = 'flow.transaction'::regclass AND contype = 'f' AND confrelid = 'flow.event'::regclass
    LOOP
        EXECUTE format('ALTER TABLE flow.transaction DROP CONSTRAINT %I', fk);
    END LOOP;
END $$;

-- Day rows are rewritten many times a day: room on each page lets an update stay on its page
-- (a HOT update) instead of adding entries to both of the table's indexes.
ALTER TABLE flow.balance SET (fillfactor = 80);

-- The outbox keeps the facts of each callback (posting id, tracekey, code) as arrays, one row per
-- batch; the relay renders the messages. Cheaper to write, in the batch's transaction, than JSON.
ALTER TABLE flow.callback_outbox
    ADD COLUMN ids uuid[],
    ADD COLUMN tracekeys uuid[],
    ADD COLUMN codes text[];
UPDATE flow.callback_outbox o
SET ids = c.ids, tracekeys = c.tracekeys, codes = c.codes
FROM (SELECT seq, array_agg((m ->> 'id')::uuid ORDER BY n) AS ids,
             array_agg((m ->> 'tracekey')::uuid ORDER BY n) AS tracekeys, array_agg(m ->> 'code' ORDER BY n) AS codes
      FROM flow.callback_outbox, json_array_elements(callbacks::json) WITH ORDINALITY AS e(m, n)
      GROUP BY seq) c
WHERE c.seq = o.seq;
DELETE FROM flow.callback_outbox WHERE ids IS NULL;  -- an empty array of callbacks: nothing to announce
ALTER TABLE flow.callback_outbox
    DROP COLUMN callbacks,
    ALTER COLUMN ids SET NOT NULL,
    ALTER COLUMN tracekeys SET NOT NULL,
    ALTER COLUMN codes SET NOT NULL;
