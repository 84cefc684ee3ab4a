"""The served gateway's logging: its own loggers are shown, access logs keep no query values."""

from __future__ import annotations

import logging

import pytest

from crm_gateway.logs import REDACTED, RedactQueryString, log_config, redact_query


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/v1/customers", "/v1/customers"),
        ("/v1/customers?email=alice%40example.com", f"/v1/customers?email={REDACTED}"),
        (
            "/v1/customers?phone=%2B442079460958&wait=true",
            f"/v1/customers?phone={REDACTED}&wait=true",
        ),
        ("/v1/customers/0xab?purpose=support", "/v1/customers/0xab?purpose=support"),
        ("/v1/customers?email", f"/v1/customers?email={REDACTED}"),
        (
            "/v1/x?not-a-pair-but-alice@example.com",
            f"/v1/x?{REDACTED}={REDACTED}",
        ),
    ],
)
def test_query_values_are_redacted_unless_known_safe(path: str, logged: str) -> None:
    assert redact_query(path) == logged


def test_the_access_log_filter_rewrites_uvicorns_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.access")
    logger.addFilter(RedactQueryString())
    try:
        with caplog.at_level(logging.INFO, logger="test.access"):
            logger.info(
                '%s - "%s %s HTTP/%s" %d',
                "127.0.0.1:5000",
                "GET",
                "/v1/customers?email=zebediah%40example.com",
                "1.1",
                200,
            )
    finally:
        logger.filters.clear()
    assert "zebediah" not in caplog.text
    assert f"GET /v1/customers?email={REDACTED} HTTP/1.1" in caplog.text


def test_log_config_shows_the_gateways_own_loggers_at_the_level_asked() -> None:
    config = log_config("debug")
    assert config["loggers"]["crm_gateway"]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn.access"]["filters"] == ["redact_query"]
    assert log_config("trace")["loggers"]["crm_gateway"]["level"] == "DEBUG"
    assert log_config("warning")["loggers"]["crm_gateway"]["level"] == "WARNING"
