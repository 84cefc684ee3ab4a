"""Customers: encrypted customer records, blind indexes, the access log.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _bigint() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customer_records",
        sa.Column("customer_id", sa.String(66), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(64), nullable=True),
        sa.Column("commitment", sa.String(66), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("erased_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customer_records"),
        sa.CheckConstraint("status IN ('active', 'erased')", name="ck_customer_records_status"),
        sa.CheckConstraint("version >= 1", name="ck_customer_records_version"),
        sa.CheckConstraint(
            "(status = 'active' AND ciphertext IS NOT NULL AND nonce IS NOT NULL"
            " AND wrapped_key IS NOT NULL AND kek_id IS NOT NULL AND erased_at IS NULL)"
            " OR (status = 'erased' AND ciphertext IS NULL AND nonce IS NULL"
            " AND wrapped_key IS NULL AND kek_id IS NULL AND erased_at IS NOT NULL)",
            name="ck_customer_records_key_material",
        ),
    )
    op.create_index("ix_customer_records_kek_id", "customer_records", ["kek_id"])

    op.create_table(
        "blind_indexes",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(66), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", name="pk_blind_indexes"),
        sa.CheckConstraint("kind IN ('email', 'phone')", name="ck_blind_indexes_kind"),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer_records.customer_id"],
            name="fk_blind_indexes_customer_id_customer_records",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_blind_indexes_customer_id", "blind_indexes", ["customer_id"])

    op.create_table(
        "access_log",
        sa.Column("seq", _bigint(), sa.Identity(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("api_key_id", sa.String(36), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("account", sa.String(42), nullable=True),
        sa.Column("customer_id", sa.String(66), nullable=True),
        sa.Column("purpose", sa.String(200), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=True),
        sa.Column("entry_hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_access_log"),
        sa.CheckConstraint("decision IN ('allowed', 'refused')", name="ck_access_log_decision"),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_access_log_api_key_id_api_keys"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_access_log_customer_id_seq", "access_log", ["customer_id", "seq"])


def downgrade() -> None:
    op.drop_table("access_log")
    op.drop_table("blind_indexes")
    op.drop_table("customer_records")
