"""Checks of statements as the query API answers them (README, API): an opening balance, the lines by
reference date, oldest first, each with the account's balance just after it, and a closing balance."""

from decimal import Decimal

__all__ = ["assert_day_ends", "assert_running_balances", "signed"]


def signed(line: dict) -> Decimal:
    """What a line does to the balance: a credit adds its amount, a debit takes it away."""
    return Decimal(line["amount"]) if line["debitcredit"] == "C" else -Decimal(line["amount"])


def assert_running_balances(statement: dict, lines: list[dict] | None = None) -> Decimal:
    """Every line's balance is the previous line's (the opening balance, for the first) plus its credit or
    minus its debit, and the last is the closing balance. `statement` is a whole statement, or its last
    page with `lines` the lines of every page in order. Returns the closing balance."""
    assert statement["next_cursor"] is None, "the closing balance follows the last page's last line"
    lines = statement["items"] if lines is None else lines
    running = Decimal(statement["opening_balance"])
    for n, line in enumerate(lines):
        running += signed(line)
        assert Decimal(line["balance"]) == running, (f"line {n}: {running} expected", line)
    assert Decimal(statement["closing_balance"]) == running, (statement["closing_balance"], running)
    return running


def assert_day_ends(lines: list[dict], days: list[dict]) -> None:
    """The balance after each day's last line is that day's balance row's: `days` are the balances
    answer's rows over the statement's window, `lines` every line of the statement."""
    after_each_day = {line["dateref"]: Decimal(line["balance"]) for line in lines}  # the day's last line wins
    assert after_each_day == {day["dateref"]: Decimal(day["balance"]) for day in days}
