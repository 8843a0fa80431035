"""Provenance names the code a process imported, and says when the tree changed before writing."""

from __future__ import annotations

import adaptrl.core.provenance as prov


def test_provenance_keeps_the_start_commit_and_flags_a_later_change(monkeypatch):
    commits = iter(["aaa", "aaa", "bbb"])
    monkeypatch.setattr(prov, "git_commit", lambda: next(commits))
    prov.start_commit.cache_clear()
    try:
        assert prov.start_commit() == "aaa"  # the CLI's call at start-up
        same = prov.provenance(seeds=[0])
        assert same["commit"] == "aaa" and "commit_at_write" not in same
        later = prov.provenance(seeds=[0])
        assert later["commit"] == "aaa" and later["commit_at_write"] == "bbb"
        assert later["seeds"] == [0] and later["machine"]["cores"]
    finally:
        prov.start_commit.cache_clear()
