"""Method registry and parameter validation for the JSON-RPC server.

A handler is an async function whose keyword parameters (after the `ctx` argument) are the
method's named params. Their annotations are the schema: a missing required param, an unknown
one or a wrong type is an Invalid params (-32602) error naming the param, before the handler
runs. The handler's docstring is the method's help text and feeds `docs/rpc.md`.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from wasupd.errors import INVALID_PARAMS, METHOD_NOT_FOUND, ProtocolError

# A coroutine function, or a plain function for methods that never wait: the server calls those
# inline as the request is read, without a task of their own (docs/rpc.md, "Concurrency").
Handler = Callable[..., Awaitable[Any]] | Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Param:
    """One named parameter of a method."""

    name: str
    annotation: Any
    required: bool
    default: Any


@dataclass(frozen=True, slots=True)
class Method:
    """A registered method: its handler, params and help text."""

    name: str
    handler: Handler
    params: tuple[Param, ...]
    doc: str
    inline: bool = False


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_describe(a) for a in args)
    if origin is list:
        return f"list[{_describe(args[0])}]" if args else "list"
    if origin is dict:
        return "object"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _matches(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in args
    if origin in (types.UnionType, typing.Union):
        return any(_matches(a, value) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(args[0], v) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


class Dispatcher:
    """Maps method names to handlers and validates params against their signatures."""

    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def register(self, name: str, handler: Handler) -> None:
        """Add `handler` as method `name`; its signature after `ctx` is the params schema."""
        hints = typing.get_type_hints(handler)
        sig = inspect.signature(handler)
        params = []
        for pname, p in list(sig.parameters.items())[1:]:
            required = p.default is inspect.Parameter.empty
            params.append(Param(pname, hints.get(pname, Any), required, p.default))
        doc = inspect.cleandoc(handler.__doc__ or "")
        inline = not inspect.iscoroutinefunction(handler)
        self.methods[name] = Method(name, handler, tuple(params), doc, inline)

    def lookup(self, name: str) -> Method:
        """The method called `name`; -32601 when there is none."""
        try:
            return self.methods[name]
        except KeyError:
            raise ProtocolError(
                METHOD_NOT_FOUND,
                f"method not found: {name!r} (see `wasupctl --help` or docs/rpc.md)",
            ) from None

    def bind(self, method: Method, params: dict[str, Any]) -> dict[str, Any]:
        """Check `params` against the method's schema; the kwargs to call the handler with."""
        known = {p.name for p in method.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ProtocolError(
                INVALID_PARAMS,
                f"invalid params for {method.name}: unknown param {unknown[0]!r}"
                f" (accepted: {', '.join(sorted(known)) or 'none'})",
            )
        kwargs: dict[str, Any] = {}
        for p in method.params:
            if p.name not in params:
                if p.required:
                    raise ProtocolError(
                        INVALID_PARAMS,
                        f"invalid params for {method.name}: missing required param {p.name!r}"
                        f" ({_describe(p.annotation)})",
                    )
                continue
            value = params[p.name]
            if not _matches(p.annotation, value):
                raise ProtocolError(
                    INVALID_PARAMS,
                    f"invalid params for {method.name}: {p.name!r} must be"
                    f" {_describe(p.annotation)}, got {type(value).__name__}",
                )
            kwargs[p.name] = value
        return kwargs

    def signature(self, method: Method) -> str:
        """`name(a: str, b: int = 3)` for docs."""
        parts = []
        for p in method.params:
            text = f"{p.name}: {_describe(p.annotation)}"
            if not p.required:
                text += f" = {p.default!r}"
            parts.append(text)
        return f"{method.name}({', '.join(parts)})"
