"""Which namespaces a pattern-scoped operator sweeps (kopf's `-n` globs and `!` exclusions)."""

from __future__ import annotations

from strategy_rollouts.operator.strategyrollout.orphans import _watched


def test_globs_include_and_bang_excludes() -> None:
    assert _watched("s-abc", ("s-*",))
    assert not _watched("prod", ("s-*",))
    assert _watched("team-a", ("team-*", "!team-b"))
    assert not _watched("team-b", ("team-*", "!team-b"))
    assert _watched("anything", ("!kube-*",)) and not _watched("kube-system", ("!kube-*",))
