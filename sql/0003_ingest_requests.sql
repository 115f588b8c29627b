-- What ingest accepted, by posting id: a client retrying an id with the same content gets the first
-- answer (same tracekey, same acceptance time); the same id with other content is refused. Old rows
-- can be purged by createdat once well past the retroactive window and SQS retention.
CREATE TABLE flow.request (
    id          uuid        PRIMARY KEY,
    fingerprint uuid        NOT NULL,
    tracekey    uuid        NOT NULL,
    acceptedat  timestamptz NOT NULL,
    createdat   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_createdat_idx ON flow.request (createdat);

-- The catalogue is managed through the API now: keep updatedat honest.
CREATE FUNCTION flow.touch_updatedat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updatedat := now();
    RETURN NEW;
END $$;
CREATE TRIGGER event_touch_updatedat BEFORE UPDATE ON flow.event
    FOR EACH ROW EXECUTE FUNCTION flow.touch_updatedat();
