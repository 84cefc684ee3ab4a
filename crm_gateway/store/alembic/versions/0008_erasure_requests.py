"""Erasure requests that customers sign in the portal (GDPR Art. 17), and their outcome.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(66), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("wallet", sa.String(42), nullable=False),
        sa.Column("signature", sa.String(132), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("operation_id", sa.String(36), nullable=True),
        sa.Column("decided_by", sa.String(42), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('requested', 'in_progress', 'done', 'refused')",
            name="ck_erasure_requests_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_requests"),
    )
    op.create_index("ix_erasure_requests_customer_id", "erasure_requests", ["customer_id"])
    op.create_index("ix_erasure_requests_status", "erasure_requests", ["status"])


def downgrade() -> None:
    op.drop_table("erasure_requests")
