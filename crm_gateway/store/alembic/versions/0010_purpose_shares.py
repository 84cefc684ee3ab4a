"""Read model of the PurposeRegistry's sharing: the organisations each purpose's controller
shares it with (issue 11: a read under a purpose needs the purpose controlled by, or shared with,
the reading organisation).

A projection: an existing database fills it with `crm-chaincode index rebuild`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rm_purpose_shares",
        sa.Column("purpose_id", sa.String(66), nullable=False),
        sa.Column("org_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("shared_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("purpose_id", "org_id", name="pk_rm_purpose_shares"),
    )


def downgrade() -> None:
    op.drop_table("rm_purpose_shares")
