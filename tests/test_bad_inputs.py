"""The bad-input suite (tests/bad_inputs): every case ends in its stated outcome.

Outcomes: a one-line error naming the problem (exit 2), a flagged and counted skip,
or a stated result; never a traceback, a silent number, a hang or a crash.
"""

from __future__ import annotations

import collections

import pytest

from bad_inputs import CATEGORIES, all_cases, run_case

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_case(case, tmp_path)


def test_the_table_covers_every_category():
    counts = collections.Counter(c.category for c in CASES)
    assert set(counts) <= set(CATEGORIES)
    print("bad-input cases by category:", dict(sorted(counts.items())), "total", len(CASES))
