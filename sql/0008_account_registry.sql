-- The account registry: status, blocks and overdraft limits, judged by the engine under the
-- account's lock (services/engine/flow_engine/account_rules.py). An account without a row is one
-- opened by its first posting (FLOW_ENGINE_UNKNOWN_ACCOUNTS=open): active, with no limit.

CREATE TABLE flow.account (
    branch         text          NOT NULL,
    account        text          NOT NULL,
    status         text          NOT NULL DEFAULT 'active'
                   CONSTRAINT account_status_check CHECK (status IN ('active', 'blocked', 'closed')),
    blockdebit     boolean       NOT NULL DEFAULT false,
    blockcredit    boolean       NOT NULL DEFAULT false,
    -- How far below zero the balance may go; null: no limit. A rule for new debits, not an invariant.
    overdraftlimit numeric(17,2)
                   CONSTRAINT account_limit_not_negative CHECK (overdraftlimit >= 0),
    holder         text,
    reason         text,         -- why the status last changed (a block, an unblock, a close)
    createdat      timestamptz   NOT NULL DEFAULT now(),
    updatedat      timestamptz   NOT NULL DEFAULT now(),
    tracekey       uuid          NOT NULL,
    updatetracekey uuid          NOT NULL,
    callersub      text,         -- who made the last change (the admin token's subject and client)
    callerclient   text,
    PRIMARY KEY (branch, account),
    -- blocked means blocked for something; active and closed carry no block flags
    CONSTRAINT account_blocked_for_something CHECK ((status = 'blocked') = (blockdebit OR blockcredit))
);

-- Forced debits (court orders, fees) are applied whatever the account's limit, never whatever its status.
ALTER TABLE flow.event ADD COLUMN forced boolean NOT NULL DEFAULT false;

-- The figures of a debit refused for funds (R028), for the query answer: the most that could have
-- been debited on its dateref, by how much it fell short, the first day whose balance would break.
ALTER TABLE flow.outcome
    ADD COLUMN available numeric(38,2),
    ADD COLUMN shortfall numeric(38,2),
    ADD COLUMN breakday  date;

-- The callbacks' figures: one per applied outcome, in the order of ids, its account's balance and
-- available balance as of today after its batch (availables null when no account has a limit). A
-- refusal's figures are its outcome's.
ALTER TABLE flow.callback_outbox
    ADD COLUMN balances   numeric(38,2)[],
    ADD COLUMN availables numeric(38,2)[];
-- Short-lived rows (as the callbacks once were, sql/0002): compressing them costs more than it saves.
ALTER TABLE flow.callback_outbox
    ALTER COLUMN balances SET STORAGE EXTERNAL,
    ALTER COLUMN availables SET STORAGE EXTERNAL;

-- A batch judges the registry before it takes its accounts' locks and checks, once it holds them,
-- that no account it took for unruled has gained a rule meanwhile (an admin change that committed
-- in between). When one has, the batch is refused as a serialization failure and tried again.
CREATE FUNCTION flow.registry_moved() RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'an account of the batch changed in the registry before the batch locked it'
        USING ERRCODE = 'serialization_failure';
END $$;
