-- Every caller known: who posted (the token's subject and client) is kept with each posting and
-- each outcome, and every change to the event catalogue leaves an append-only audit row.

-- The caller of a posting, as ingest verified it: null for postings recorded before, or accepted
-- with authentication disabled. Not part of the fingerprint: a retry by another caller is the same posting.
ALTER TABLE flow.transaction
    ADD COLUMN callersub text,
    ADD COLUMN callerclient text;
ALTER TABLE flow.outcome
    ADD COLUMN callersub text,
    ADD COLUMN callerclient text;

-- The catalogue's audit trail: one row per insert or update of flow.event, with the row before and
-- after, and the caller ingest named in the same transaction (set_config('flow.caller_sub', ..., true)
-- and 'flow.caller_client'); a change made without them records nulls.
CREATE TABLE flow.event_audit (
    id           bigserial   PRIMARY KEY,
    code         integer     NOT NULL,
    changedat    timestamptz NOT NULL DEFAULT now(),
    callersub    text,
    callerclient text,
    before       jsonb,
    after        jsonb
);
CREATE INDEX event_audit_code_idx ON flow.event_audit (code, changedat);

-- Runs with its owner's rights (the schema's owner), so the trail is written whatever the caller may
-- do on flow.event_audit; a fixed search_path keeps a caller from slipping in objects of its own.
CREATE FUNCTION flow.audit_event_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO flow.event_audit (code, callersub, callerclient, before, after)
    VALUES (NEW.code,
            nullif(current_setting('flow.caller_sub', true), ''),
            nullif(current_setting('flow.caller_client', true), ''),
            CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END,
            to_jsonb(NEW));
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION flow.audit_event_change() FROM PUBLIC;
CREATE TRIGGER event_audited AFTER INSERT OR UPDATE ON flow.event
    FOR EACH ROW EXECUTE FUNCTION flow.audit_event_change();

-- Append-only: no role rewrites the trail, not even one granted UPDATE, DELETE or TRUNCATE on it
-- (the deployment grants the application's role those on every table of the schema).
CREATE FUNCTION flow.refuse_audit_rewrite() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'flow.event_audit is append-only: its rows are never changed nor removed'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER event_audit_never_rewritten BEFORE UPDATE OR DELETE ON flow.event_audit
    FOR EACH ROW EXECUTE FUNCTION flow.refuse_audit_rewrite();
CREATE TRIGGER event_audit_never_truncated BEFORE TRUNCATE ON flow.event_audit
    FOR EACH STATEMENT EXECUTE FUNCTION flow.refuse_audit_rewrite();
REVOKE UPDATE, DELETE, TRUNCATE ON flow.event_audit FROM PUBLIC;
