"""Canonical JSON and the salted keccak256 commitment."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_gateway.vault.commitment import canonical_json, commit, new_salt

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@given(value=st.dictionaries(st.text(max_size=8), json_values, max_size=6), seed=st.integers())
def test_key_order_does_not_matter(value: dict[str, Any], seed: int) -> None:
    import unicodedata

    if len({unicodedata.normalize("NFC", k) for k in value}) != len(value):
        return  # keys that collide after NFC are refused (tested below)
    assert canonical_json(_shuffled(value, random.Random(seed))) == canonical_json(value)
    decoded = json.loads(canonical_json(value))
    assert canonical_json(decoded) == canonical_json(value)


def test_canonical_form() -> None:
    value = {"b": [1, 2.5, True, None], "a": {"z": "é", "y": "x y"}}
    assert canonical_json(value) == '{"a":{"y":"x y","z":"é"},"b":[1,2.5,true,null]}'.encode()


def test_strings_and_keys_are_nfc() -> None:
    composed, decomposed = "Zo\u00eb", "Zoe\u0308"
    assert canonical_json({composed: composed}) == canonical_json({decomposed: decomposed})
    with pytest.raises(ValueError, match="normalise"):
        canonical_json({composed: 1, decomposed: 2})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN"):
        canonical_json({"x": bad})


def test_unsupported_types_are_refused() -> None:
    with pytest.raises(TypeError):
        canonical_json({"x": b"bytes"})
    with pytest.raises(TypeError):
        canonical_json({1: "x"})


def test_commit_is_keccak_of_salt_and_canonical() -> None:
    # keccak256(32 zero bytes), the well-known hash of bytes32(0)
    expected = "290decd9548b62a8d60345a988386fc84ba6bc95484008f6362f93160ef3e563"
    assert commit(b"", bytes(32)).hex() == expected
    salt = new_salt()
    assert commit(b"{}", salt) != commit(b"{}", new_salt())
    assert commit(b"{}", salt) == commit(b"{}", salt)
    with pytest.raises(ValueError, match="32 bytes"):
        commit(b"{}", b"short")


def test_new_salt_is_random() -> None:
    salts = {new_salt() for _ in range(100)}
    assert len(salts) == 100
    assert all(len(s) == 32 for s in salts)
