"""Initial schema: API keys, the operations outbox and chain transactions.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _bigint() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"], unique=True)
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])

    op.create_table(
        "chain_transactions",
        sa.Column("id", _bigint(), sa.Identity(), nullable=False),
        sa.Column("sender", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("raw_tx", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("broadcast_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("first_sent_at", _ts(), nullable=True),
        sa.Column("last_sent_at", _ts(), nullable=True),
        sa.Column("mined_at", _ts(), nullable=True),
        sa.Column("finalized_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_chain_transactions"),
        sa.UniqueConstraint("sender", "nonce", name="uq_chain_transactions_sender_nonce"),
        sa.UniqueConstraint("tx_hash", name="uq_chain_transactions_tx_hash"),
        sa.CheckConstraint(
            "status IN ('sent', 'mined', 'failed', 'dropped')",
            name="ck_chain_transactions_status",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_chain_transactions_status", "chain_transactions", ["status"])

    op.create_table(
        "operations",
        sa.Column("seq", _bigint(), sa.Identity(), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("api_key_id", sa.String(36), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("contract", sa.String(128), nullable=False),
        sa.Column("function", sa.String(128), nullable=False),
        sa.Column("args", _json(), nullable=False),
        sa.Column("sender", sa.String(42), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_name", sa.String(128), nullable=True),
        sa.Column("error_args", _json(), nullable=True),
        sa.Column("chain_tx_id", _bigint(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_operations"),
        sa.UniqueConstraint("id", name="uq_operations_id"),
        sa.UniqueConstraint(
            "api_key_id", "idempotency_key", name="uq_operations_api_key_id_idempotency_key"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'submitted', 'confirmed', 'failed')",
            name="ck_operations_status",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_operations_api_key_id_api_keys"
        ),
        sa.ForeignKeyConstraint(
            ["chain_tx_id"],
            ["chain_transactions.id"],
            name="fk_operations_chain_tx_id_chain_transactions",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_operations_status_seq", "operations", ["status", "seq"])
    op.create_index("ix_operations_chain_tx_id", "operations", ["chain_tx_id"])
    op.create_index(
        "uq_operations_idempotency_key_internal",
        "operations",
        ["idempotency_key"],
        unique=True,
        sqlite_where=sa.text("api_key_id IS NULL AND idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("api_key_id IS NULL AND idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("operations")
    op.drop_table("chain_transactions")
    op.drop_table("api_keys")
