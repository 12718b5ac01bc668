"""Name a network failure by its real cause: the openai client's aiohttp transport reports a refused
connection as ``APITimeoutError: Request timed out.`` (the connect error is wrapped as a connect timeout),
which sends users looking for a slow server when nothing listens on the port."""

from __future__ import annotations

import socket


def network_cause(exc: BaseException) -> str:
    """``connection refused`` / ``host not found`` / ``connection reset`` / ``timed out`` from the chain of
    causes of ``exc``; its own ``TypeName: message`` when nothing more precise is found."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError):
            return f"connection refused ({cur})"
        if isinstance(cur, socket.gaierror):
            return f"host not found ({cur})"
        if isinstance(cur, ConnectionResetError):
            return f"connection reset by the server ({cur})"
        cur = cur.__cause__ or cur.__context__
    return f"{type(exc).__name__}: {str(exc)[:300]}"
