"""Read model of LoyaltyPoints: balances per holder and every balance change (earn, reward,
redeem, transfer) for histories and coalition settlement.

Both tables are projections: an existing database fills them with `crm-chaincode index rebuild`.

Revision ID: 0006
Revises: 0005
Create Date: 2025-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rm_loyalty_balances",
        sa.Column("wallet", sa.String(42), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("wallet", name="pk_rm_loyalty_balances"),
    )
    op.create_table(
        "rm_loyalty_movements",
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=True),
        sa.Column("merchant", sa.String(42), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("from_wallet", sa.String(42), nullable=True),
        sa.Column("to_wallet", sa.String(42), nullable=True),
        sa.Column("reason", sa.String(66), nullable=True),
        sa.PrimaryKeyConstraint("tx_hash", "log_index", name="pk_rm_loyalty_movements"),
    )
    op.create_index(
        "ix_rm_loyalty_movements_from_wallet_block_number",
        "rm_loyalty_movements",
        ["from_wallet", "block_number"],
    )
    op.create_index(
        "ix_rm_loyalty_movements_to_wallet_block_number",
        "rm_loyalty_movements",
        ["to_wallet", "block_number"],
    )
    op.create_index("ix_rm_loyalty_movements_moved_at", "rm_loyalty_movements", ["moved_at"])


def downgrade() -> None:
    op.drop_table("rm_loyalty_movements")
    op.drop_table("rm_loyalty_balances")
