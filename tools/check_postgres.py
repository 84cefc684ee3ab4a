"""Say whether PostgreSQL is reachable at TEST_POSTGRES_URL; never fails (used by `make test`)."""

from __future__ import annotations

import os
import sys

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> int:
    url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_URL
    try:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        shown = make_url(url).render_as_string(hide_password=True)
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                version = connection.execute(text("show server_version")).scalar()
        finally:
            engine.dispose()
    except Exception as exc:  # any failure only means "not reachable"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"PostgreSQL is NOT reachable at {url.split('@')[-1]} ({reason[:160]}).")
        print("The PostgreSQL store tests will be skipped; set TEST_POSTGRES_URL to run them.")
        return 0
    print(f"PostgreSQL {version} is reachable at {shown}: the PostgreSQL store tests will run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
