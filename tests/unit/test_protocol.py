"""JSON-RPC framing and parameter validation."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasupd import protocol
from wasupd.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ProtocolError,
    SessionNotFound,
)
from wasupd.rpc.dispatch import Dispatcher


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"{not json", PARSE_ERROR),
        (b"\xff\xfe", PARSE_ERROR),
        (b"[1, 2]", INVALID_REQUEST),
        (b'"hello"', INVALID_REQUEST),
        (b'{"jsonrpc": "1.0", "method": "x", "id": 1}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "method": 5, "id": 1}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "method": "x", "params": [1], "id": 1}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "method": "x", "id": true}', INVALID_REQUEST),
    ],
)
def test_bad_requests_get_the_right_code(line: bytes, code: int) -> None:
    """Each malformed request maps to its JSON-RPC error code."""
    with pytest.raises(ProtocolError) as err:
        protocol.parse_request(line)
    assert err.value.instance_code == code


def test_error_message_carries_stable_name() -> None:
    """Domain errors carry their name in error.data.name and their own code."""
    msg = protocol.error_message(7, SessionNotFound("no session named 'x'", session="x"))
    assert msg["error"]["data"] == {"name": "SessionNotFound", "session": "x"}
    assert msg["error"]["code"] == SessionNotFound.code
    assert protocol.encode(msg).count(b"\n") == 1


async def _handler(
    ctx: object,
    name: str,
    count: int = 1,
    mode: Literal["a", "b"] = "a",
    tags: list[str] | None = None,
) -> str:
    """Example."""
    return f"{name}{count}{mode}{tags}"


def test_dispatcher_validates_params() -> None:
    """Missing, unknown and wrongly typed params are Invalid params naming the param."""
    d = Dispatcher()
    d.register("x.y", _handler)
    m = d.lookup("x.y")
    assert d.bind(m, {"name": "n", "tags": ["a"]}) == {"name": "n", "tags": ["a"]}
    for params, fragment in [
        ({}, "missing required param 'name'"),
        ({"name": "n", "zzz": 1}, "unknown param 'zzz'"),
        ({"name": 3}, "'name' must be str"),
        ({"name": "n", "count": True}, "'count' must be int"),
        ({"name": "n", "mode": "c"}, "'mode' must be 'a' | 'b'"),
        ({"name": "n", "tags": [1]}, "'tags' must be list[str] | null"),
    ]:
        with pytest.raises(ProtocolError) as err:
            d.bind(m, params)
        assert err.value.instance_code == INVALID_PARAMS
        assert fragment in err.value.message
    assert d.signature(m).startswith("x.y(name: str, count: int = 1")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_parse_never_raises_anything_but_protocol_error(value: object) -> None:
    """Any JSON value either parses into a Request or raises ProtocolError."""
    try:
        req = protocol.parse_request(json.dumps(value).encode())
    except ProtocolError:
        return
    assert isinstance(req.params, dict)
