-- The account registry's audit trail: one append-only row per change to flow.account, as sql/0007
-- keeps the event catalogue's. flow.account keeps only its last change's author and reason; the trail
-- keeps every change: who (the caller ingest names in the same transaction: set_config('flow.caller_sub',
-- ..., true) and 'flow.caller_client'), when, the change's tracekey, the registry fields it changed
-- (their values before and after) and the reason given with it.
--
-- `change` is what the admin API did ('flow.account_change', set with the caller): open, change (limit or
-- holder), block, unblock, close. An insert is always an open (the admin API registering an account,
-- one opened by its first posting included, before changing it); a change made outside the admin API is
-- an update or a delete. The engine never writes flow.account (an account opened by its first posting has
-- no row), so it leaves nothing here.
CREATE TABLE flow.account_audit (
    id           bigserial   PRIMARY KEY,
    branch       text        NOT NULL,
    account      text        NOT NULL,
    change       text        NOT NULL
                 CONSTRAINT account_audit_change_check
                 CHECK (change IN ('open', 'change', 'block', 'unblock', 'close', 'update', 'delete')),
    changedat    timestamptz NOT NULL DEFAULT now(),
    callersub    text,
    callerclient text,
    tracekey     uuid,       -- the change's (flow.account.updatetracekey); null for a delete
    reason       text,       -- given with a block, an unblock or a close (or a reason changed by hand)
    -- The registry fields (status, blockdebit, blockcredit, overdraftlimit, holder) as they were and as
    -- they became: all of them for an open (before null) and a delete (after null), the ones that moved
    -- for any other change ({} both when none did).
    before       jsonb,
    after        jsonb
);
-- An account's trail in order: the admin API changes an account under its lock, so its ids follow its commits.
CREATE INDEX account_audit_account_idx ON flow.account_audit (branch, account, id);

-- Runs with its owner's rights (the schema's owner), so the trail is written whatever the caller may
-- do on flow.account_audit; a fixed search_path keeps a caller from slipping in objects of its own.
CREATE FUNCTION flow.audit_account_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    fields  CONSTANT text[] := ARRAY['status', 'blockdebit', 'blockcredit', 'overdraftlimit', 'holder'];
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    any_row jsonb := coalesce(new_row, old_row);
    kind    text := CASE TG_OP WHEN 'INSERT' THEN 'open' WHEN 'DELETE' THEN 'delete'
                    ELSE coalesce(nullif(current_setting('flow.account_change', true), ''), 'update') END;
    was     jsonb;
    became  jsonb;
BEGIN
    SELECT jsonb_object_agg(field, old_row -> field), jsonb_object_agg(field, new_row -> field)
    INTO was, became
    FROM unnest(fields) AS field
    WHERE TG_OP <> 'UPDATE' OR (old_row -> field) IS DISTINCT FROM (new_row -> field);
    INSERT INTO flow.account_audit (branch, account, change, callersub, callerclient, tracekey, reason, before, after)
    VALUES (any_row ->> 'branch',
            any_row ->> 'account',
            kind,
            nullif(current_setting('flow.caller_sub', true), ''),
            nullif(current_setting('flow.caller_client', true), ''),
            CASE WHEN TG_OP <> 'DELETE' THEN (new_row ->> 'updatetracekey')::uuid END,
            CASE WHEN TG_OP = 'INSERT' OR kind IN ('block', 'unblock', 'close')
                      OR (TG_OP = 'UPDATE' AND (old_row -> 'reason') IS DISTINCT FROM (new_row -> 'reason'))
                 THEN new_row ->> 'reason' END,
            CASE WHEN TG_OP <> 'INSERT' THEN coalesce(was, '{}') END,
            CASE WHEN TG_OP <> 'DELETE' THEN coalesce(became, '{}') END);
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION flow.audit_account_change() FROM PUBLIC;
CREATE TRIGGER account_audited AFTER INSERT OR UPDATE OR DELETE ON flow.account
    FOR EACH ROW EXECUTE FUNCTION flow.audit_account_change();

-- A TRUNCATE fires no row trigger: the rows it is about to remove are recorded as deletes first.
CREATE FUNCTION flow.audit_account_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO flow.account_audit (branch, account, change, callersub, callerclient, before)
    SELECT a.branch, a.account, 'delete',
           nullif(current_setting('flow.caller_sub', true), ''),
           nullif(current_setting('flow.caller_client', true), ''),
           jsonb_build_object('status', a.status, 'blockdebit', a.blockdebit, 'blockcredit', a.blockcredit,
                              'overdraftlimit', a.overdraftlimit, 'holder', a.holder)
    FROM flow.account a
    ORDER BY a.branch, a.account;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION flow.audit_account_truncate() FROM PUBLIC;
CREATE TRIGGER account_truncate_audited BEFORE TRUNCATE ON flow.account
    FOR EACH STATEMENT EXECUTE FUNCTION flow.audit_account_truncate();

-- Append-only: no role rewrites the trail, not even one granted UPDATE, DELETE or TRUNCATE on it
-- (the deployment grants the application's role those on every table of the schema).
CREATE FUNCTION flow.refuse_account_audit_rewrite() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'flow.account_audit is append-only: its rows are never changed nor removed'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER account_audit_never_rewritten BEFORE UPDATE OR DELETE ON flow.account_audit
    FOR EACH ROW EXECUTE FUNCTION flow.refuse_account_audit_rewrite();
CREATE TRIGGER account_audit_never_truncated BEFORE TRUNCATE ON flow.account_audit
    FOR EACH STATEMENT EXECUTE FUNCTION flow.refuse_account_audit_rewrite();
REVOKE UPDATE, DELETE, TRUNCATE ON flow.account_audit FROM PUBLIC;
