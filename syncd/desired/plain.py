"""Loaded device files' results as plain values (for :mod:`marshal`), and back.

A spread load (:mod:`syncd.desired.spread`) sends each worker's results to
this process. Pickling the specs would cost more than building them
(unpickling 10,000: 0.38 s); marshal of plain tuples costs a tenth of that.
"""

from __future__ import annotations

import marshal
from typing import Any

from pydantic import SecretStr

from syncd.desired.result import FileFailed, Problem
from syncd.model import AccountSpec, AuthMethod, AuthSpec, DeviceSpec, Mode, TlsSpec
from syncd.secrets import SecretRef

__all__ = ["decode", "encode"]

#: ``{file: (stamps, result)}``: a result is ``(spec, warnings)`` or :class:`FileFailed`.
Results = dict[str, tuple[tuple[Any, ...], Any]]


def encode(results: Results) -> bytes:
    return marshal.dumps(
        [(rel, tuple(map(tuple, stamps)), _result(r)) for rel, (stamps, r) in results.items()]
    )


def decode(data: bytes, stamp: Any) -> Results:
    """``stamp`` rebuilds one file stamp from its tuple."""
    return {
        rel: (tuple(stamp(*s) for s in stamps), _unresult(r))
        for rel, stamps, r in marshal.loads(data)
    }


def _result(result: Any) -> tuple[Any, ...]:
    if isinstance(result, FileFailed):
        return (False, [_problem(p) for p in result.problems])
    spec, warnings = result
    return (True, _spec(spec), [_problem(p) for p in warnings])


def _unresult(plain: tuple[Any, ...]) -> Any:
    if not plain[0]:
        return FileFailed([Problem(*p) for p in plain[1]])
    return _unspec(plain[1]), [Problem(*p) for p in plain[2]]


def _problem(p: Problem) -> tuple[Any, ...]:
    return (p.file, p.line, p.path, p.message, p.warning)


def _spec(spec: DeviceSpec[SecretRef]) -> tuple[Any, ...]:
    auth, tls = spec.auth, spec.tls
    return (
        spec.name,
        spec.file,
        spec.url,
        (auth.method.value, auth.username, _ref(auth.password)),
        (tls.verify, tls.ca_file),
        spec.mode.value,
        [(a.account, dict(a.fields), _ref(a.password)) for a in spec.accounts.values()],
        spec.sources,
        spec.url_at,
    )


def _unspec(plain: tuple[Any, ...]) -> DeviceSpec[SecretRef]:
    (
        name,
        file,
        url,
        (method, username, password),
        (verify, ca_file),
        mode,
        accounts,
        sources,
        at,
    ) = plain
    return DeviceSpec(
        name=name,
        file=file,
        url=url,
        auth=AuthSpec(AuthMethod(method), username, _unref(password)),
        tls=TlsSpec(verify, ca_file),
        mode=Mode(mode),
        accounts={n: AccountSpec(n, fields, _unref(ref)) for n, fields, ref in accounts},
        sources=sources,
        url_at=None if at is None else (at[0], at[1]),
    )


def _ref(ref: SecretRef | None) -> tuple[Any, ...] | None:
    if ref is None:
        return None
    literal = ref.literal.get_secret_value() if ref.literal is not None else None
    return (ref.source, ref.name, literal, ref.where)


def _unref(plain: tuple[Any, ...] | None) -> SecretRef | None:
    if plain is None:
        return None
    source, name, literal, where = plain
    secret = SecretStr(literal) if literal is not None else None
    return SecretRef(source, name, secret, tuple(where) if where is not None else None)
