-- The account registry's version: a number every change to flow.account moves, committed with it.
-- The engine reads the registry before it takes a batch's account locks (with the outcomes, in one
-- statement) and judges the batch's ruled accounts on what it read; once it holds the locks, the
-- version as it is then says whether any admin change committed in between. Unchanged (nearly
-- always: admin changes are rare), nothing of the registry needs reading again under the locks;
-- changed, the engine compares the batch's accounts one by one and tries the batch again when one of
-- them moved (flow.registry_moved(), sql/0008).

CREATE TABLE flow.registry_version (
    one     boolean PRIMARY KEY DEFAULT true CONSTRAINT registry_version_one_row CHECK (one),
    version bigint  NOT NULL
);
INSERT INTO flow.registry_version (version) VALUES (0);

-- Per statement, not per row: a bulk change moves it once. Rows are locked in commit order, so two
-- admin changes never commit the same version; the row missing, the engine treats the registry as
-- changed every time (slower, never wrong).
CREATE FUNCTION flow.count_registry_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE flow.registry_version SET version = version + 1;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION flow.count_registry_change() FROM PUBLIC;
CREATE TRIGGER account_changes_counted AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON flow.account
    FOR EACH STATEMENT EXECUTE FUNCTION flow.count_registry_change();
