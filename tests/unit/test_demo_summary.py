"""`make demo`'s bookkeeping: parts run in order, the first one that does not end as expected (or raises)
stops the story, and the summary table says which and why (the story itself: tests/integration)."""

from __future__ import annotations

import io

from rich.console import Console

from demo.story import Unexpected
from demo.summary import Part, run_parts, summary_table


def render(console: Console) -> str:
    return str(console.file.getvalue())  # type: ignore[attr-defined]


def console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


def test_every_part_runs_in_order_and_reports_what_happened() -> None:
    calls: list[str] = []

    def part(name: str) -> Part[str]:
        def act(world: str) -> str:
            calls.append(f"{name}:{world}")
            return f"{name} done"

        return (name, f"{name} ok", act)

    outcomes = run_parts("w", [part("a"), part("b")], console())
    assert calls == ["a:w", "b:w"]
    assert [(o.name, o.happened, o.ok) for o in outcomes] == [("a", "a done", True), ("b", "b done", True)]
    assert all(o.seconds >= 0 for o in outcomes)


def test_an_unexpected_ending_or_an_error_stops_the_story_and_the_table_says_why() -> None:
    def unexpected(world: str) -> str:
        raise Unexpected("phase Succeeded, expected RolledBack")

    def boom(world: str) -> str:
        raise TimeoutError("no verdict within 120s")

    def never(world: str) -> str:
        raise AssertionError("must not run after a failed part")

    out = console()
    outcomes = run_parts(
        "w", [("one", "Pass", lambda w: "Pass"), ("two", "RolledBack", unexpected), ("three", "x", never)], out
    )
    assert [o.ok for o in outcomes] == [True, False, None]
    assert outcomes[1].happened == "phase Succeeded, expected RolledBack"
    assert outcomes[2].happened == "skipped: two did not end as expected"
    outcomes = run_parts("w", [("one", "Pass", boom), ("two", "x", never)], out)
    assert outcomes[0].happened == "TimeoutError: no verdict within 120s" and outcomes[0].ok is False
    assert "Traceback" in render(out)  # where it failed is printed
    out.print(summary_table(outcomes, 12.0))
    table = render(out)
    assert "TimeoutError: no verdict within 120s" in table and "✗" in table and "12s" in table
