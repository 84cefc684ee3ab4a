"""A mis-declared partitioned projection is refused when it is defined, not at the first reorg."""

from __future__ import annotations

import pytest

from crm_gateway.indexer.projections.base import PartitionedProjection
from crm_gateway.store.models import RmConsent, RmPurpose


def test_a_partitioned_projection_over_a_table_without_the_key_column_is_refused() -> None:
    with pytest.raises(TypeError, match="RmPurpose has no column 'customer_id'"):

        class _Broken(PartitionedProjection):
            name = "broken"
            tables = (RmConsent, RmPurpose)  # rm_purposes has no customer_id
            partition_argument = "customerId"
            partition_column = "customer_id"
