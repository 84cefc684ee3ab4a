"""Logging of the served gateway (`crm-chaincode serve` and `run`).

uvicorn's own logging configuration, with two changes:

* The gateway's loggers (`crm_gateway.*`) write through uvicorn's handler at `LOG_LEVEL`.
  uvicorn configures only its own loggers, so without this everything the gateway logs below
  WARNING (pipeline, indexer, vault) was dropped.
* The access log never shows query-string values. `GET /v1/customers?email=...` looks a
  customer up by personal data, and a URL is the part of a request that every log keeps, so the
  value of every query parameter not in `SAFE_QUERY_PARAMETERS` is written as `[redacted]`
  (the parameter's name stays, for debugging). Keep personal data out of URLs anyway: reverse
  proxies and load balancers log them too.

Request and response bodies are never logged, and the gateway's own log messages never carry
personal data (see `services.customers`; `tests/e2e/test_no_plaintext_pii.py` checks it).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import uvicorn.config

#: Query parameters whose values are safe to log (they never hold personal data).
SAFE_QUERY_PARAMETERS: Final = frozenset({"wait", "purpose", "consistency", "org", "role"})
REDACTED: Final = "[redacted]"
_PLAIN_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")
_PATH_ARG: Final = 2  # uvicorn's access record: (client, method, path?query, http version, status)


def redact_query(path: str) -> str:
    """`path` with the value of every query parameter not known to be safe replaced.

    A parameter's name is kept unless it does not look like one (it could be data itself).
    """
    base, separator, query = path.partition("?")
    if not separator:
        return path
    pairs = [
        (name, value)
        if name in SAFE_QUERY_PARAMETERS
        else (name if _PLAIN_NAME.fullmatch(name) else REDACTED, REDACTED)
        for name, value in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{base}?{urlencode(pairs, safe='[]')}" if pairs else base + "?" + REDACTED


class RedactQueryString(logging.Filter):
    """Rewrites the request path of uvicorn access-log records with `redact_query`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > _PATH_ARG and isinstance(args[_PATH_ARG], str):
            record.args = (*args[:_PATH_ARG], redact_query(args[_PATH_ARG]), *args[_PATH_ARG + 1 :])
        return True


def log_config(level: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` configuration to hand to `uvicorn.run(log_config=...)`."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    name = level.upper()
    gateway_level = "DEBUG" if name == "TRACE" else name
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQueryString}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_query"]
    config["loggers"]["crm_gateway"] = {
        "handlers": ["default"],
        "level": gateway_level,
        "propagate": False,
    }
    return config
