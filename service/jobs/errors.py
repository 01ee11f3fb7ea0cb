"""The two errors of a job's pure path, each naming the field at fault: :class:`DataError` for one bad
piece of data, :class:`SpecError` for everything wrong with a spec (its fields, or its data once loaded).

They live below spec.py, data.py and plan.py, which all raise them, so that none of those imports
another only for its errors.
"""

from __future__ import annotations

from optim.errors import ECHO_LIMIT, clipped


class DataError(ValueError):
    """Bad data, with the location of the offending field (e.g. ("data", "y"))."""

    def __init__(self, loc: tuple, msg: str):
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc = tuple(loc)
        self.msg = msg


class SpecError(ValueError):
    """A spec that cannot run; ``errors`` is a list of {"loc": [...], "msg": ...}."""

    def __init__(self, errors: list[dict]):
        # a user's own keys and values come back in locations and messages: never more than about
        # ECHO_LIMIT characters of each (messages quote values with shown(); this is the backstop)
        self.errors = [{**e, "loc": [clipped(p) if isinstance(p, str) else p for p in e["loc"]],
                        "msg": clipped(e["msg"], 5 * ECHO_LIMIT)} for e in errors]
        super().__init__("; ".join(f"{format_loc(e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
                                   for e in self.errors))


def format_loc(loc) -> str:
    """("model", "layers", 0, "units") -> "model.layers[0].units"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
