"""Loading the Redis Lua scripts, each with the shared offset-ledger prelude."""

from __future__ import annotations

from importlib import resources

__all__ = ["load_script"]


def load_script(package: str, name: str) -> str:
    """`ledger.lua` followed by `package/name`: one script, so still one EVALSHA per batch."""
    prelude = resources.files("k2lib.ingestion").joinpath("ledger.lua").read_text()
    return prelude + "\n" + resources.files(package).joinpath(name).read_text()
