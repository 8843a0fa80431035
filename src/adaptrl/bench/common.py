"""Benchmark helpers; provenance lives in ``adaptrl.core.provenance`` so every layer can record it."""

from adaptrl.core.provenance import git_commit, machine_info, provenance, write_json

__all__ = ["git_commit", "machine_info", "provenance", "write_json"]
