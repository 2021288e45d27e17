"""Corrupted replies, as a broken or hostile client would send them (tests and demos; the
fault ``kind: corrupt`` of ``RunConfig.faults``). Each corruption is one case the server's
validation (lada.federation.validation) must reject."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from lada.federation.protocol import Echo, Payload, Task

CORRUPTIONS = ("nan", "inf", "ids", "shape", "long_path", "task", "replay")


def corrupt(reply: Payload, how: str) -> Payload:
    """A copy of ``reply`` broken in one way (``how`` in :data:`CORRUPTIONS`):

    ``nan`` / ``inf``  the first float array's first value (else a float field) becomes NaN/inf
    ``ids``           the first public id is replaced by one that was not asked for
    ``shape``         the first array loses its last row
    ``long_path``     the first path grows to a million characters
    ``task``          the echo names another task
    ``replay``        the echo names the previous round (a reply replayed from it)

    A corruption that has nothing to act on (no ids, arrays or paths) changes the echo's round,
    so that every corrupted reply stays detectable."""
    if how not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {how!r} (expected one of {CORRUPTIONS})")
    out = copy.deepcopy(reply)
    out.echo = reply.echo  # type: ignore[misc]
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    arrays = [n for n, v in fields.items() if isinstance(v, np.ndarray) and v.size]
    if how in ("nan", "inf"):
        bad = float("nan") if how == "nan" else float("inf")
        floats = [n for n in arrays if fields[n].dtype.kind == "f"]
        scalars = [n for n, v in fields.items() if isinstance(v, float)]
        if floats:
            a = fields[floats[0]].copy()
            a.reshape(-1)[0] = bad
            setattr(out, floats[0], a)
            return out
        if scalars:
            setattr(out, scalars[0], bad)
            return out
    elif how == "ids" and fields.get("ids"):
        out.ids = [f"{fields['ids'][0]}#not-asked", *fields["ids"][1:]]  # type: ignore[attr-defined]
        return out
    elif how == "shape" and arrays:
        setattr(out, arrays[0], fields[arrays[0]][:-1].copy())
        return out
    elif how == "long_path" and fields.get("paths"):
        out.paths = ["x" * 1_000_000, *fields["paths"][1:]]  # type: ignore[attr-defined]
        return out
    elif how == "task" and reply.echo is not None:
        other = Task.EVALUATE if reply.echo.task != Task.EVALUATE else Task.EMBED
        out.echo = Echo(str(other), reply.echo.round, reply.echo.client)  # type: ignore[misc]
        return out
    if reply.echo is not None:  # "replay", and any corruption with nothing to act on
        e = reply.echo
        out.echo = Echo(e.task, e.round - 1, e.client)  # type: ignore[misc]
    return out
