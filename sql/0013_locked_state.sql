-- The engine's step 3b (services/engine/flow_engine/apply.py) in one round trip: take a batch's
-- account locks, then read the day rows of the accounts whose debits a limit judges, as they are once
-- the locks are held. Sent as two statements, the read waited for a round trip while the locks were
-- held, and other batches of those accounts with it; in one statement, its snapshot would be taken
-- before the locks. In a VOLATILE function every query takes a snapshot of its own (READ COMMITTED),
-- so the read sees every batch that held the locks before.
--
-- The read: for each account (the <US>-separated lists, in order, with their limits) the end-of-day
-- balances from `since` (the earliest day the batch touches) on and, when `since` has no row, the one
-- before (`opening`). Only for the accounts a worst case would break: their lowest balance from `since`
-- on, less every debit the batch has for them (`debit_list`), below -limit; the others pass every debit
-- whatever the order (credits only raise balances), and need no judging. `place`: the account's place
-- in the lists (from 1). One index range scan per account, in date order (array_agg keeps its input's
-- order), and one more for `opening` only when needed.
CREATE FUNCTION flow.lock_and_read_limits(keys bigint[], branch_list text, account_list text, since_list text,
                                          debit_list text, limit_list text)
    RETURNS TABLE (place bigint, opening numeric, days date[], balances numeric[])
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(key) FROM unnest(keys) AS key;  -- in array order: the engine sorts the keys
    RETURN QUERY
    SELECT w.ord, o.opening, d.days, d.balances
    FROM unnest(string_to_array(branch_list, chr(31)), string_to_array(account_list, chr(31)),
                CAST(string_to_array(since_list, chr(31)) AS date[]),
                CAST(string_to_array(debit_list, chr(31)) AS numeric[]),
                CAST(string_to_array(limit_list, chr(31)) AS numeric[]))
         WITH ORDINALITY AS w(branch, account, since, debits, overdraftlimit, ord)
    CROSS JOIN LATERAL (
        SELECT array_agg(b.dateref) AS days, array_agg(b.balance) AS balances, min(b.balance) AS lowest
        FROM (SELECT b.dateref, b.accumulatedcredit - b.accumulateddebit AS balance
              FROM flow.balance b
              WHERE b.branch = w.branch AND b.account = w.account AND b.dateref >= w.since
              ORDER BY b.dateref) b) d
    CROSS JOIN LATERAL (
        SELECT CASE WHEN d.days[1] IS DISTINCT FROM w.since THEN coalesce((
                   SELECT b.accumulatedcredit - b.accumulateddebit FROM flow.balance b
                   WHERE b.branch = w.branch AND b.account = w.account AND b.dateref < w.since
                   ORDER BY b.dateref DESC LIMIT 1), 0) END AS opening
        OFFSET 0) o  -- (computed once, not again for the filter)
    WHERE least(d.lowest, o.opening) - w.debits < -w.overdraftlimit;
END $$;
