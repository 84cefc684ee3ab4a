"""Read model: the indexer's cursor, recent block hashes, decoded chain events, projections
(roles, customers, purposes and consents).

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-24
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
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
        "indexer_cursor",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_indexer_cursor"),
    )
    op.create_table(
        "indexed_blocks",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(66), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_indexed_blocks"),
    )
    op.create_table(
        "indexed_contracts",
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("from_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_indexed_contracts"),
    )
    op.create_table(
        "chain_events",
        sa.Column("id", _bigint(), sa.Identity(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("contract", sa.String(128), nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("args", _json(), nullable=False),
        sa.Column("block_timestamp", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chain_events"),
        sa.UniqueConstraint("tx_hash", "log_index", name="uq_chain_events_tx_hash_log_index"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_chain_events_block_number_log_index", "chain_events", ["block_number", "log_index"]
    )
    op.create_index("ix_chain_events_contract_event", "chain_events", ["contract", "event"])

    op.create_table(
        "rm_organizations",
        sa.Column("org_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("admin", sa.String(42), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name="pk_rm_organizations"),
    )
    op.create_table(
        "rm_members",
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("joined_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_rm_members"),
    )
    op.create_index("ix_rm_members_org_id", "rm_members", ["org_id"])
    op.create_table(
        "rm_role_holdings",
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("role", sa.String(66), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("granted_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "role", name="pk_rm_role_holdings"),
    )
    op.create_index("ix_rm_role_holdings_org_id", "rm_role_holdings", ["org_id"])

    op.create_table(
        "rm_customers",
        sa.Column("customer_id", sa.String(66), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("wallet", sa.String(42), nullable=True),
        sa.Column("wallet_nonce", sa.BigInteger(), nullable=False),
        sa.Column("registered_block", sa.BigInteger(), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_rm_customers"),
        sa.CheckConstraint("status IN ('active', 'erased')", name="ck_rm_customers_status"),
    )
    op.create_index("ix_rm_customers_wallet", "rm_customers", ["wallet"])
    op.create_table(
        "rm_customer_holders",
        sa.Column("customer_id", sa.String(66), nullable=False),
        sa.Column("org_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("commitment", sa.String(66), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "org_id", name="pk_rm_customer_holders"),
    )
    op.create_index("ix_rm_customer_holders_org_id", "rm_customer_holders", ["org_id"])

    op.create_table(
        "rm_purposes",
        sa.Column("purpose_id", sa.String(66), nullable=False),
        sa.Column("controller_org", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("notice_hash", sa.String(66), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("purpose_id", name="pk_rm_purposes"),
    )
    op.create_table(
        "rm_consents",
        sa.Column("customer_id", sa.String(66), nullable=False),
        sa.Column("purpose_id", sa.String(66), nullable=False),
        sa.Column("org_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("purpose_version", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=True),
        sa.Column("receipt_hash", sa.String(66), nullable=False),
        sa.Column("changed_at", _ts(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "purpose_id", "org_id", name="pk_rm_consents"),
    )
    op.create_index("ix_rm_consents_purpose_id_org_id", "rm_consents", ["purpose_id", "org_id"])
    op.create_table(
        "rm_consent_changes",
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.String(66), nullable=False),
        sa.Column("purpose_id", sa.String(66), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("purpose_version", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("receipt_hash", sa.String(66), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("submitter", sa.String(42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("tx_hash", "log_index", name="pk_rm_consent_changes"),
    )
    op.create_index(
        "ix_rm_consent_changes_customer_id_block_number",
        "rm_consent_changes",
        ["customer_id", "block_number"],
    )
    op.create_index("ix_rm_consent_changes_receipt_hash", "rm_consent_changes", ["receipt_hash"])


def downgrade() -> None:
    op.drop_table("rm_consent_changes")
    op.drop_table("rm_consents")
    op.drop_table("rm_purposes")
    op.drop_table("rm_customer_holders")
    op.drop_table("rm_customers")
    op.drop_table("rm_role_holdings")
    op.drop_table("rm_members")
    op.drop_table("rm_organizations")
    op.drop_table("chain_events")
    op.drop_table("indexed_contracts")
    op.drop_table("indexed_blocks")
    op.drop_table("indexer_cursor")
