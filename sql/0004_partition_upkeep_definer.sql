-- Partition upkeep runs with the rights of the functions' owner (the role that applies these
-- scripts and owns the schema), so the services can log in as a role that owns nothing: creating a
-- partition of flow.transaction needs ownership of flow.transaction, which a least-privilege
-- application role must not have. maintain_transaction_partitions() takes no input and creates
-- only next months' partitions; a fixed search_path keeps a caller from slipping in objects of its
-- own, and only roles granted EXECUTE may call it. create_transaction_partitions(), which takes a
-- range, stays with its caller's rights.
ALTER FUNCTION flow.maintain_transaction_partitions()
    SECURITY DEFINER SET search_path = pg_catalog, flow, partman, pg_temp;
ALTER FUNCTION flow.create_transaction_partitions(date, integer) SET search_path = pg_catalog, flow, pg_temp;
REVOKE EXECUTE ON FUNCTION flow.maintain_transaction_partitions() FROM PUBLIC;
