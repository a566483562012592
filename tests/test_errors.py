"""Tests for kubemirror.errors."""

from __future__ import annotations

import pytest

from kubemirror import errors


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (400, "BadRequest", errors.BadRequestError),
        (401, "Unauthorized", errors.UnauthorizedError),
        (404, "NotFound", errors.NotFoundError),
        (409, "Conflict", errors.ConflictError),
        (410, "Expired", errors.GoneError),
        (500, "Expired", errors.GoneError),
        (422, "Invalid", errors.InvalidError),
        (503, "ServiceUnavailable", errors.ApiError),
    ],
    ids=lambda v: str(v) if not isinstance(v, type) else v.__name__,
)
def test_api_error_from_status(code: int, reason: str, cls: type[errors.ApiError]) -> None:
    err = errors.api_error_from_status({"code": code, "reason": reason, "message": "m"})
    assert type(err) is cls
    assert err.code == code
    assert isinstance(err, errors.KubemirrorError)


def test_config_error_quotes_expression_and_position() -> None:
    err = errors.ConfigError("unexpected ']'", field="index_by[0]", expression="a.b]", position=3)
    text = str(err)
    assert "index_by[0]" in text
    assert "'a.b]'" in text
    assert "position 3" in text
    assert isinstance(err, ValueError)
