"""Anchored access log: the hash chain's head, the batches anchored on-chain, and the chain over
the entries written before this revision.

Existing entries are renumbered 1..N in their order if their numbers have gaps (PostgreSQL
identities skip numbers on rollback; nothing refers to `access_log.seq` before this revision),
then chained in that order, and the head is set to the last one. From here on `seq` is assigned
by `store.audit.append_entries`, without gaps.

Revision ID: 0005
Revises: 0003
Create Date: 2025-11-25
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from crm_gateway.store.audit import GENESIS_HASH, entry_hash
from crm_gateway.store.models import UTCDateTime

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAGE = 5_000

# The columns of access_log as of this revision (not the model, which may change later).
_log = sa.table(
    "access_log",
    sa.column("seq", sa.BigInteger()),
    sa.column("at", UTCDateTime()),
    sa.column("api_key_id", sa.String()),
    sa.column("org_id", sa.Integer()),
    sa.column("account", sa.String()),
    sa.column("customer_id", sa.String()),
    sa.column("purpose", sa.String()),
    sa.column("action", sa.String()),
    sa.column("decision", sa.String()),
    sa.column("reason", sa.String()),
    sa.column("prev_hash", sa.String()),
    sa.column("entry_hash", sa.String()),
)
_head = sa.table(
    "audit_chain_head",
    sa.column("id", sa.Integer()),
    sa.column("last_seq", sa.BigInteger()),
    sa.column("last_hash", sa.String()),
    sa.column("updated_at", UTCDateTime()),
)


def _bigint() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
    )
    op.create_table(
        "audit_batches",
        sa.Column("id", _bigint(), sa.Identity(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("contract", sa.String(42), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("chain_batch_id", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("anchored_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_batches"),
        sa.ForeignKeyConstraint(
            ["operation_id"], ["operations.id"], name="fk_audit_batches_operation_id_operations"
        ),
        sa.UniqueConstraint("operation_id", name="uq_audit_batches_operation_id"),
        sa.UniqueConstraint(
            "contract", "chain_batch_id", name="uq_audit_batches_contract_chain_batch_id"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'anchored', 'failed')", name="ck_audit_batches_status"
        ),
        sa.CheckConstraint(
            "first_seq >= 1 AND last_seq >= first_seq", name="ck_audit_batches_range"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "uq_audit_batches_first_seq_live",
        "audit_batches",
        ["first_seq"],
        unique=True,
        sqlite_where=sa.text("status != 'failed'"),
        postgresql_where=sa.text("status != 'failed'"),
    )
    op.create_index("ix_audit_batches_last_seq", "audit_batches", ["last_seq"])
    _chain_existing_entries(op.get_bind())


def _chain_existing_entries(bind: sa.Connection) -> None:
    found: Sequence[Any] = bind.execute(sa.select(_log.c.seq).order_by(_log.c.seq)).scalars().all()
    seqs: list[int] = [int(seq) for seq in found]
    if seqs != list(range(1, len(seqs) + 1)):
        # Negate first, so that no new number collides with an old one half-way.
        bind.execute(sa.update(_log).values(seq=-_log.c.seq))
        bind.execute(
            sa.update(_log)
            .where(_log.c.seq == sa.bindparam("b_old"))
            .values(seq=sa.bindparam("b_new")),
            [{"b_old": -old, "b_new": new} for new, old in enumerate(seqs, start=1)],
        )
    prev, last = GENESIS_HASH, 0
    while True:
        rows = bind.execute(
            sa.select(_log).where(_log.c.seq > last).order_by(_log.c.seq).limit(_PAGE)
        ).all()
        if not rows:
            break
        updates = []
        for row in rows:
            digest = entry_hash(
                seq=row.seq,
                at=row.at,
                api_key_id=row.api_key_id,
                org_id=row.org_id,
                account=row.account,
                customer_id=row.customer_id,
                purpose=row.purpose,
                action=row.action,
                decision=row.decision,
                reason=row.reason,
                prev_hash=prev,
            )
            updates.append({"b_seq": row.seq, "b_prev": prev, "b_hash": digest})
            prev, last = digest, int(row.seq)
        bind.execute(
            sa.update(_log)
            .where(_log.c.seq == sa.bindparam("b_seq"))
            .values(prev_hash=sa.bindparam("b_prev"), entry_hash=sa.bindparam("b_hash")),
            updates,
        )
    bind.execute(
        sa.insert(_head).values(id=1, last_seq=last, last_hash=prev, updated_at=datetime.now(UTC))
    )


def downgrade() -> None:
    op.drop_index("ix_audit_batches_last_seq", table_name="audit_batches")
    op.drop_index("uq_audit_batches_first_seq_live", table_name="audit_batches")
    op.drop_table("audit_batches")
    op.drop_table("audit_chain_head")
