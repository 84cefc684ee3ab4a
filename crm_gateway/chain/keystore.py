"""Signer keys in encrypted keystore files (Web3 Secret Storage), unlocked at start or on first use.

Signing happens locally with eth-account. eth-keys silently falls back to a pure-Python backend
when coincurve is missing, which signs about ten times slower; `require_fast_signing` refuses to
start in that case instead of quietly losing throughput.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys.backends import get_backend
from eth_utils.address import to_checksum_address


class KeystoreError(RuntimeError):
    """A keystore file is missing, unreadable or locked with another password."""


def require_fast_signing() -> None:
    """Fail unless eth-keys signs with coincurve."""
    backend = type(get_backend()).__name__
    if backend != "CoinCurveECCBackend":
        raise KeystoreError(
            f"eth-keys is using {backend}, the slow pure-Python signer; install coincurve"
        )


class Keystore:
    """A directory of keystore files named `<checksum address>.json`, all under one password."""

    def __init__(self, directory: Path, password: str, *, scrypt_n: int = 262_144) -> None:
        self.directory = directory
        self._password = password
        self._scrypt_n = scrypt_n
        self._unlocked: dict[str, LocalAccount] = {}

    def _path(self, address: str) -> Path:
        return self.directory / f"{to_checksum_address(address)}.json"

    def addresses(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(to_checksum_address(p.stem) for p in self.directory.glob("0x*.json"))

    def create(self) -> LocalAccount:
        """Make a new random key and store it encrypted."""
        return self.add(Account.create())

    def add(self, account: LocalAccount) -> LocalAccount:
        """Store an existing key encrypted (0600, written atomically)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        encrypted = Account.encrypt(
            account.key, self._password, kdf="scrypt", iterations=self._scrypt_n
        )
        target = self._path(account.address)
        temporary = target.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(encrypted, handle)
        temporary.replace(target)
        self._unlocked[account.address] = account
        return account

    def unlock(self, address: str) -> LocalAccount:
        """Decrypt one key (once; later calls return the cached account)."""
        checksum = to_checksum_address(address)
        if checksum in self._unlocked:
            return self._unlocked[checksum]
        path = self._path(checksum)
        if not path.is_file():
            raise KeystoreError(f"no keystore file for {checksum} in {self.directory}")
        try:
            key = Account.decrypt(json.loads(path.read_text()), self._password)
        except ValueError as exc:
            raise KeystoreError(f"cannot unlock {checksum}: wrong KEYSTORE_PASSWORD") from exc
        account: LocalAccount = Account.from_key(key)
        self._unlocked[checksum] = account
        return account

    def unlock_all(self) -> dict[str, LocalAccount]:
        return {address: self.unlock(address) for address in self.addresses()}

    def get(self, address: str) -> LocalAccount | None:
        """The account, unlocked, or None when the keystore has no key for it.

        A key added to the directory after start (`crm-chaincode apikeys create` or `accounts
        new` in another process) is unlocked on its first use here, without a restart.
        """
        checksum = to_checksum_address(address)
        account = self._unlocked.get(checksum)
        if account is not None or not self._path(checksum).is_file():
            return account
        try:
            return self.unlock(checksum)
        except (KeystoreError, OSError, ValueError, KeyError):
            return None  # unreadable (e.g. being written): not available now
