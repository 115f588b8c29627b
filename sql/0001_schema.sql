-- FLOW ledger schema. Plain DDL, kept exactly as executed: auditors read these files.
-- Every timestamp is timestamptz and written in UTC; money is numeric(15,2).

CREATE SCHEMA IF NOT EXISTS flow;

-- The event catalogue: every posting names the event that caused it.
CREATE TABLE flow.event (
    code        serial      PRIMARY KEY,
    description text        NOT NULL,
    active      boolean     NOT NULL DEFAULT true,   -- inactive events receive no new postings
    allowdebit  boolean     NOT NULL DEFAULT true,
    allowcredit boolean     NOT NULL DEFAULT true,
    createdat   timestamptz NOT NULL DEFAULT now(),
    updatedat   timestamptz NOT NULL DEFAULT now()
);

-- One row per applied posting. The id is the client's idempotency key (or one ingest drew).
CREATE TABLE flow.transaction (
    id          uuid          PRIMARY KEY,
    branch      text          NOT NULL,
    account     text          NOT NULL,
    amount      numeric(15,2) NOT NULL CONSTRAINT transaction_amount_positive CHECK (amount > 0),
    debitcredit varchar(1)    NOT NULL CONSTRAINT transaction_debitcredit_check CHECK (debitcredit IN ('D', 'C')),
    eventcode   integer       NOT NULL REFERENCES flow.event (code),
    description text,
    tracekey    uuid          NOT NULL,
    details     json,
    dateref     date          NOT NULL,
    acceptedat  timestamptz   NOT NULL,                -- when ingest accepted it: the retroactive window is judged against this
    createdat   timestamptz   NOT NULL DEFAULT now()   -- when the engine applied it
);
-- Statements read an account's postings in date order.
CREATE INDEX transaction_account_dateref_idx ON flow.transaction (branch, account, dateref, createdat, id);
CREATE INDEX transaction_tracekey_idx ON flow.transaction (tracekey);

-- One row per branch/account/day: that day's totals and the running totals up to and including it.
CREATE TABLE flow.balance (
    id                uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    branch            text          NOT NULL,
    account           text          NOT NULL,
    dateref           date          NOT NULL,
    totaldebit        numeric(15,2) NOT NULL DEFAULT 0,
    totalcredit       numeric(15,2) NOT NULL DEFAULT 0,
    accumulateddebit  numeric(15,2) NOT NULL DEFAULT 0,
    accumulatedcredit numeric(15,2) NOT NULL DEFAULT 0,
    tracekey          uuid          NOT NULL,          -- the posting that created the row
    createdat         timestamptz   NOT NULL DEFAULT now(),
    updatetracekey    uuid          NOT NULL,          -- the last posting that changed the row
    updatedat         timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT balance_account_day_key UNIQUE (branch, account, dateref),
    CONSTRAINT balance_totals_not_negative CHECK (
        totaldebit >= 0 AND totalcredit >= 0 AND accumulateddebit >= 0 AND accumulatedcredit >= 0)
);

-- The outcome of every posting the engine has handled, applied or rejected. Its primary key makes
-- a redelivered message change nothing; the fingerprint tells a redelivery from an id reused with
-- other content.
CREATE TABLE flow.outcome (
    id          uuid        PRIMARY KEY,
    tracekey    uuid        NOT NULL,
    fingerprint text        NOT NULL,
    status      text        NOT NULL CONSTRAINT outcome_status_check CHECK (status IN ('applied', 'rejected')),
    code        text        NOT NULL,
    message     text        NOT NULL,
    createdat   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outcome_tracekey_idx ON flow.outcome (tracekey);
