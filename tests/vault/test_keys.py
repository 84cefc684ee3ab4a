"""The keyring file: creation with mode 0600, refusal when exposed, wrap/unwrap, rotate, retire."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from crm_gateway.config import Settings
from crm_gateway.vault.blind_index import load_index_key
from crm_gateway.vault.keys import (
    KekInUseError,
    KeyProvider,
    KeyringFileProvider,
    KeyringFormatError,
    KeyringPermissionError,
    TamperedKeyError,
    UnknownKekError,
    WrappedKey,
)

DATA_KEY = bytes(range(32))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keyring_is_created_private_on_first_use(keyring_path: Path) -> None:
    provider = KeyringFileProvider(keyring_path)
    assert not keyring_path.exists()  # nothing happens before first use
    kek_id = provider.current_kek_id()
    assert keyring_path.exists()
    assert _mode(keyring_path) == 0o600
    assert _mode(keyring_path.parent) == 0o700
    document = json.loads(keyring_path.read_text())
    assert document["format"] == 1
    assert document["current"] == kek_id
    assert [kek["id"] for kek in document["keks"]] == [kek_id] == provider.kek_ids()
    assert len(base64.b64decode(document["keks"][0]["key"])) == 32
    assert "index_key" not in document  # only made when asked for
    assert isinstance(provider, KeyProvider)


def test_keyring_created_under_a_permissive_umask_is_still_private(keyring_path: Path) -> None:
    old = os.umask(0)
    try:
        KeyringFileProvider(keyring_path).current_kek_id()
    finally:
        os.umask(old)
    assert _mode(keyring_path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o620])
def test_keyring_readable_or_writable_by_others_is_refused(keyring_path: Path, mode: int) -> None:
    KeyringFileProvider(keyring_path).current_kek_id()
    keyring_path.chmod(mode)
    with pytest.raises(KeyringPermissionError, match="chmod 600"):
        KeyringFileProvider(keyring_path).current_kek_id()


def test_a_keyring_made_public_later_is_refused_on_reload(keyring_path: Path) -> None:
    provider = KeyringFileProvider(keyring_path)
    provider.current_kek_id()
    keyring_path.chmod(0o644)
    other = KeyringFileProvider(keyring_path)
    with pytest.raises(KeyringPermissionError):
        other.rotate()


def test_symlinked_keyring_is_refused(tmp_path: Path, keyring_path: Path) -> None:
    KeyringFileProvider(keyring_path).current_kek_id()
    link = tmp_path / "link.json"
    link.symlink_to(keyring_path)
    with pytest.raises(KeyringPermissionError, match="symbolic link"):
        KeyringFileProvider(link).current_kek_id()


def test_corrupt_keyring_is_refused(keyring_path: Path) -> None:
    keyring_path.parent.mkdir(parents=True)
    keyring_path.write_text('{"format": 1, "current": "x", "keks": []}')
    keyring_path.chmod(0o600)
    with pytest.raises(KeyringFormatError):
        KeyringFileProvider(keyring_path).current_kek_id()
    keyring_path.write_text('{"format": 1, "current": "a", "keks": [{"id": "a", "key": "AAAA"}]}')
    with pytest.raises(KeyringFormatError, match="32 bytes"):
        KeyringFileProvider(keyring_path).current_kek_id()


def test_wrap_and_unwrap(provider: KeyringFileProvider) -> None:
    wrapped = provider.wrap(DATA_KEY)
    assert wrapped.kek_id == provider.current_kek_id()
    assert len(wrapped.wrapped) == 60
    assert DATA_KEY not in wrapped.wrapped
    assert provider.unwrap(wrapped) == DATA_KEY
    assert provider.wrap(DATA_KEY).wrapped != wrapped.wrapped  # fresh nonce every time
    with pytest.raises(ValueError, match="32 bytes"):
        provider.wrap(b"short")


def test_unwrap_detects_tampering_and_relabelling(provider: KeyringFileProvider) -> None:
    wrapped = provider.wrap(DATA_KEY)
    for position in (0, 12, 59):
        blob = bytearray(wrapped.wrapped)
        blob[position] ^= 0x01
        with pytest.raises(TamperedKeyError):
            provider.unwrap(WrappedKey(wrapped.kek_id, bytes(blob)))
    with pytest.raises(TamperedKeyError):
        provider.unwrap(WrappedKey(wrapped.kek_id, wrapped.wrapped[:-1]))
    other = provider.rotate()
    with pytest.raises(TamperedKeyError):  # the KEK id is authenticated (AAD)
        provider.unwrap(WrappedKey(other, wrapped.wrapped))
    with pytest.raises(UnknownKekError):
        provider.unwrap(WrappedKey("kek-nope", wrapped.wrapped))


def test_rotate_keeps_old_keks_and_other_instances_follow(keyring_path: Path) -> None:
    first = KeyringFileProvider(keyring_path)
    second = KeyringFileProvider(keyring_path)  # another gateway process
    old = first.current_kek_id()
    wrapped_old = second.wrap(DATA_KEY)
    new = first.rotate()
    assert new != old
    assert first.current_kek_id() == new
    assert first.kek_ids() == [old, new]
    assert second.current_kek_id() == new  # re-read because the file changed
    wrapped_new = second.wrap(DATA_KEY)
    assert wrapped_new.kek_id == new
    assert first.unwrap(wrapped_old) == first.unwrap(wrapped_new) == DATA_KEY
    assert _mode(keyring_path) == 0o600
    leftovers = [p.name for p in keyring_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_retire_needs_a_usage_check_and_refuses_keks_in_use(
    provider: KeyringFileProvider, keyring_path: Path
) -> None:
    old = provider.current_kek_id()
    wrapped = provider.wrap(DATA_KEY)
    with pytest.raises(KekInUseError, match="current"):
        provider.retire(old, in_use=lambda _: 0)
    provider.rotate()
    with pytest.raises(KekInUseError, match="usage check"):
        provider.retire(old)
    with pytest.raises(KekInUseError) as refused:
        provider.retire(old, in_use=lambda kek_id: 3 if kek_id == old else 0)
    assert refused.value.count == 3
    assert old in provider.kek_ids()
    provider.retire(old, in_use=lambda _: 0)
    assert old not in provider.kek_ids()
    with pytest.raises(UnknownKekError):
        provider.unwrap(wrapped)
    with pytest.raises(UnknownKekError):
        provider.retire(old, in_use=lambda _: 0)
    document = json.loads(keyring_path.read_text())
    assert [entry["id"] for entry in document["retired"]] == [old]
    assert "key" not in document["retired"][0]
    assert old not in {kek["id"] for kek in document["keks"]}


def test_index_key_is_made_once_and_kept(keyring_path: Path) -> None:
    provider = KeyringFileProvider(keyring_path)
    assert not provider.has_index_key()
    key = provider.index_key()
    assert len(key) == 32
    assert provider.has_index_key()
    assert KeyringFileProvider(keyring_path).index_key() == key
    provider.rotate()  # rotation keeps the index key
    assert KeyringFileProvider(keyring_path).index_key() == key
    assert key not in {
        base64.b64decode(k["key"]) for k in json.loads(keyring_path.read_text())["keks"]
    }


def test_load_index_key_prefers_the_setting(tmp_path: Path, keyring_path: Path) -> None:
    hex_key = "ab" * 32
    settings = Settings(_env_file=None, index_key=hex_key, vault_keyring_file=keyring_path)
    assert load_index_key(settings) == bytes.fromhex(hex_key)
    assert not keyring_path.exists()  # not even created
    settings = Settings(_env_file=None, vault_keyring_file=keyring_path)
    from_file = load_index_key(settings)
    assert from_file == KeyringFileProvider(keyring_path).index_key()


@pytest.mark.parametrize("bad", ["ab" * 31, "zz" * 32, "ab" * 33])
def test_index_key_setting_must_be_256_bit_hex(bad: str) -> None:
    with pytest.raises(ValidationError, match="index_key"):
        Settings(_env_file=None, index_key=bad)


def _rotate_in_child(path: str) -> None:
    KeyringFileProvider(path).rotate()


def test_concurrent_rotations_from_processes_all_land(keyring_path: Path) -> None:
    KeyringFileProvider(keyring_path).current_kek_id()
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_rotate_in_child, args=(str(keyring_path),)) for _ in range(6)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert len(KeyringFileProvider(keyring_path).kek_ids()) == 7
