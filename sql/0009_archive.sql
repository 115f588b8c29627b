-- The archive: old months of flow.transaction leave the database for the data lake (S3, Parquet),
-- and stay answerable. The archive job (flow-archive) exports a month, reads it back and checks it,
-- and only then has the month's partition detached and dropped; a restore attaches it again.
-- Outcome rows and day rows of archived months stay: they keep idempotency and balances whole.

-- One row per month the job has worked on. 'verified': the export in S3 was read back and matches
-- the partition (the partition is still there); 'archived': the partition is gone, reads of the
-- month are served from the archive. The query service reads this table (from the replica) to know
-- which months to read from S3; the state changes in the transaction that drops or restores the
-- partition, so a reader sees the month in exactly one place.
CREATE TABLE flow.archive_month (
    month          date        PRIMARY KEY CONSTRAINT archive_month_first_day CHECK (date_trunc('month', month) = month),
    state          text        NOT NULL CONSTRAINT archive_month_state_check CHECK (state IN ('verified', 'archived')),
    partition_name text        NOT NULL,          -- restored under the same name
    manifest_key   text        NOT NULL,          -- the S3 key of the month's manifest
    postings       bigint      NOT NULL,
    totaldebit     numeric(38,2) NOT NULL,
    totalcredit    numeric(38,2) NOT NULL,
    verifiedat     timestamptz NOT NULL DEFAULT now(),
    archivedat     timestamptz
);

-- The archived months' per account and day sums (the manifest's, as the dropped partition had
-- them): reconciliation recomputes every day row from flow.transaction plus these, so it still
-- covers archived days and the running totals that carry on from them.
CREATE TABLE flow.archived_day (
    branch      text          NOT NULL,
    account     text          NOT NULL,
    dateref     date          NOT NULL,
    totaldebit  numeric(38,2) NOT NULL,
    totalcredit numeric(38,2) NOT NULL,
    postings    bigint        NOT NULL,
    CONSTRAINT archived_day_pkey PRIMARY KEY (branch, account, dateref)
);

-- Each run of the job, for its metrics and alert (last success, failures).
CREATE TABLE flow.archive_run (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    startedat  timestamptz NOT NULL DEFAULT now(),
    finishedat timestamptz,
    status     text        NOT NULL DEFAULT 'running' CONSTRAINT archive_run_status_check
                               CHECK (status IN ('running', 'succeeded', 'failed')),
    months     integer     NOT NULL DEFAULT 0,    -- months archived by the run
    error      text
);

-- The partition holding one month of flow.transaction (null: none).
CREATE FUNCTION flow.transaction_partition_of(month date) RETURNS regclass
LANGUAGE sql STABLE SET search_path = pg_catalog, flow AS $$
    SELECT c.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'flow.transaction'::regclass
      AND pg_get_expr(c.relpartbound, c.oid)
          = format('FOR VALUES FROM (%L) TO (%L)', month, (month + interval '1 month')::date)
$$;

-- Detaches and drops a verified month, with the owner's rights (the job logs in as the application's
-- role, which owns nothing). Refuses unless the month was recorded as verified with exactly the rows
-- and sums the partition holds now, under a lock that keeps anything from writing to it: a posting
-- that reached the month after its export was checked stops the drop (the next run exports again).
CREATE FUNCTION flow.drop_archived_month(month date) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, flow, pg_temp AS $$
DECLARE
    part regclass := flow.transaction_partition_of(month);
    recorded flow.archive_month;
    found_rows bigint;
    found_debit numeric;
    found_credit numeric;
BEGIN
    SELECT * INTO recorded FROM flow.archive_month a WHERE a.month = drop_archived_month.month FOR UPDATE;
    IF recorded IS NULL OR recorded.state <> 'verified' THEN
        RAISE EXCEPTION 'month % is not verified', month USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF part IS NULL THEN
        RAISE EXCEPTION 'month % has no partition', month USING ERRCODE = 'undefined_table';
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', part);
    EXECUTE format('SELECT count(*), coalesce(sum(amount) FILTER (WHERE debitcredit = ''D''), 0),
                           coalesce(sum(amount) FILTER (WHERE debitcredit = ''C''), 0) FROM %s', part)
        INTO found_rows, found_debit, found_credit;
    IF (found_rows, found_debit, found_credit) IS DISTINCT FROM (recorded.postings, recorded.totaldebit, recorded.totalcredit) THEN
        RAISE EXCEPTION 'month % changed since its export was verified (% rows, verified %)', month, found_rows, recorded.postings
            USING ERRCODE = 'serialization_failure';
    END IF;
    EXECUTE format('INSERT INTO flow.archived_day (branch, account, dateref, totaldebit, totalcredit, postings)
                    SELECT branch, account, dateref, coalesce(sum(amount) FILTER (WHERE debitcredit = ''D''), 0),
                           coalesce(sum(amount) FILTER (WHERE debitcredit = ''C''), 0), count(*)
                    FROM %s GROUP BY branch, account, dateref', part);
    EXECUTE format('ALTER TABLE flow.transaction DETACH PARTITION %s', part);
    EXECUTE format('DROP TABLE %s', part);
    UPDATE flow.archive_month a SET state = 'archived', archivedat = now() WHERE a.month = drop_archived_month.month;
    RETURN found_rows;
END $$;

-- A restore's first step: an empty table shaped like flow.transaction, outside it, that the caller
-- may fill (COPY); restore_archived_month then attaches it. Both in the caller's one transaction.
CREATE FUNCTION flow.restore_table(month date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, flow, pg_temp AS $$
DECLARE
    recorded flow.archive_month;
    name text;
BEGIN
    SELECT * INTO recorded FROM flow.archive_month a WHERE a.month = restore_table.month FOR UPDATE;
    IF recorded IS NULL OR recorded.state <> 'archived' OR flow.transaction_partition_of(month) IS NOT NULL THEN
        RAISE EXCEPTION 'month % is not archived', month USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    name := recorded.partition_name;
    EXECUTE format('CREATE TABLE flow.%I (LIKE flow.transaction INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    -- The partition's bound as a constraint: ATTACH then needs no scan to prove it.
    EXECUTE format('ALTER TABLE flow.%I ADD CONSTRAINT %I CHECK (dateref >= %L AND dateref < %L)',
                   name, name || '_bound', month, (month + interval '1 month')::date);
    EXECUTE format('GRANT INSERT, SELECT ON flow.%I TO %I', name, session_user);
    RETURN name;
END $$;

CREATE FUNCTION flow.restore_archived_month(month date) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, flow, pg_temp AS $$
DECLARE
    recorded flow.archive_month;
    found_rows bigint;
    found_debit numeric;
    found_credit numeric;
BEGIN
    SELECT * INTO recorded FROM flow.archive_month a WHERE a.month = restore_archived_month.month FOR UPDATE;
    IF recorded IS NULL OR recorded.state <> 'archived' THEN
        RAISE EXCEPTION 'month % is not archived', month USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('SELECT count(*), coalesce(sum(amount) FILTER (WHERE debitcredit = ''D''), 0),
                           coalesce(sum(amount) FILTER (WHERE debitcredit = ''C''), 0) FROM flow.%I', recorded.partition_name)
        INTO found_rows, found_debit, found_credit;
    IF (found_rows, found_debit, found_credit) IS DISTINCT FROM (recorded.postings, recorded.totaldebit, recorded.totalcredit) THEN
        RAISE EXCEPTION 'restored month % differs from its archive (% rows, archived %)', month, found_rows, recorded.postings
            USING ERRCODE = 'data_exception';
    END IF;
    EXECUTE format('ALTER TABLE flow.transaction ATTACH PARTITION flow.%I FOR VALUES FROM (%L) TO (%L)',
                   recorded.partition_name, month, (month + interval '1 month')::date);
    EXECUTE format('ALTER TABLE flow.%I DROP CONSTRAINT %I', recorded.partition_name, recorded.partition_name || '_bound');
    DELETE FROM flow.archived_day WHERE dateref >= month AND dateref < (month + interval '1 month')::date;
    DELETE FROM flow.archive_month a WHERE a.month = restore_archived_month.month;
    RETURN found_rows;
END $$;

REVOKE EXECUTE ON FUNCTION flow.drop_archived_month(date), flow.restore_table(date),
    flow.restore_archived_month(date) FROM PUBLIC;
