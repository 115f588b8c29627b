"""sql/schema.sql, the schema as people read it, is what the numbered scripts make today."""

from tools import schema_snapshot


async def test_the_snapshot_is_what_the_scripts_make(stack):
    made = await schema_snapshot.dump(stack.database_url.rsplit("/", 1)[0])
    assert made == schema_snapshot.PATH.read_text(), \
        "sql/schema.sql is not what sql/ makes: run .venv/bin/python -m tools.schema_snapshot"
    # The partitioned table and its default partition are there, the monthly partitions are not (they follow
    # the calendar), nor anything pg_dump writes differently each run.
    assert "PARTITION BY RANGE (dateref)" in made and "flow.transaction_default" in made
    assert "transaction_p20" not in made and "\\restrict" not in made and "Dumped by" not in made


def test_the_monthly_partitions_and_run_lines_are_left_out():
    dumped = """--
-- PostgreSQL database dump
--

\\restrict abc123
-- Dumped from database version 15.20
-- Dumped by pg_dump version 15.20

--
-- Name: transaction; Type: TABLE; Schema: flow; Owner: -
--

CREATE TABLE flow.transaction (id uuid) PARTITION BY RANGE (dateref);

--
-- Name: transaction_p2026_11; Type: TABLE; Schema: flow; Owner: -
--

CREATE TABLE flow.transaction_p2026_11 (id uuid);

--
-- Name: transaction_p2026_11_pkey; Type: INDEX ATTACH; Schema: flow; Owner: -
--

ALTER INDEX flow.transaction_pkey ATTACH PARTITION flow.transaction_p2026_11_pkey;

\\unrestrict abc123
"""
    kept = schema_snapshot.normalise(dumped)
    assert "CREATE TABLE flow.transaction (id uuid)" in kept
    assert "p2026_11" not in kept and "restrict" not in kept and "Dumped" not in kept
