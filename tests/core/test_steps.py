"""core/steps.py: comparing row counts."""

from __future__ import annotations

from ubertruck_ops.core.steps import compare_counts


def test_compare_counts_names_every_difference():
    assert compare_counts({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert compare_counts({"a": 1, "b": 2}, {"a": 1, "c": 5}) == ["b: expected 2, restored no table",
                                                                  "c: expected no table, restored 5"]
