"""Key-encryption keys (KEKs): the `KeyProvider` protocol and the local keyring file.

Every customer record is encrypted with its own random data key (see `vault.envelope`); the data
key is stored only *wrapped* (encrypted) by a KEK, with the KEK's id beside it. A `KeyProvider`
owns the KEKs: it wraps and unwraps data keys, makes a new current KEK (`rotate`), lists the KEKs
it can still unwrap with (`kek_ids`) and destroys one (`retire`) once no record uses it.

`KeyringFileProvider` keeps the KEKs in a JSON file::

    {
      "format": 1,
      "current": "kek-20251122T101500Z-3f9a1c2e",
      "keks": [{"id": "...", "key": "<base64 of 32 bytes>", "created_at": "2025-11-22T10:15:00Z"}],
      "retired": [{"id": "...", "created_at": "...", "retired_at": "..."}],
      "index_key": {"key": "<base64 of 32 bytes>", "created_at": "..."}
    }

The file (and its directory) is created on first use with mode 0600 (0700), every change is
written to a temporary file in the same directory, fsynced and renamed over the old one (readers
never see half a keyring), and changes are serialised between processes with an advisory lock on
`<file>.lock`. A keyring that group or others may read or write is refused with
`KeyringPermissionError`: `chmod 600` it (and ask who may have copied it).

Wrapping is AES-256-GCM under the KEK with a random 96-bit nonce and the KEK id (plus a format
label) as associated data, so a wrapped key cannot be presented under another KEK id. The stored
value is `nonce (12) || ciphertext (32) || tag (16)`, 60 bytes. With random nonces one KEK should
wrap fewer than 2**32 keys (NIST SP 800-38D); rotation resets the count.

The blind-index key is *not* a KEK: see `index_key()` below and `vault.blind_index`.

Other providers
---------------
A KMS or HashiCorp Vault transit provider implements the same protocol without ever exposing a
KEK to the gateway:

* `current_kek_id()`: the key's name plus its latest version, e.g. `"transit:crm-kek:v7"` or an
  AWS KMS key ARN (a KMS key's material versions are rotated inside the KMS; use the ARN of a new
  key, or the alias target, as the id when you want `rotate_all` to re-wrap).
* `wrap(data_key)`: Vault `POST transit/encrypt/<name>` with the base64 data key and the KEK id
  as `associated_data`/`context` (AWS: `Encrypt` with an `EncryptionContext`); store the returned
  `vault:v7:...` token (or KMS ciphertext blob) as `WrappedKey.wrapped`.
* `unwrap(wrapped)`: `POST transit/decrypt/<name>` (KMS `Decrypt`), mapping an authentication
  failure to `TamperedKeyError` and an unknown or deleted key version to `UnknownKekError`.
* `rotate()`: `POST transit/keys/<name>/rotate` (KMS: create a key or schedule rotation), return
  the new id. Vault can also re-wrap without decrypting in the gateway: `transit/rewrap`.
* `retire(kek_id, in_use=...)`: after the same usage check, raise the key's
  `min_decryption_version` (Vault) or schedule the key's deletion (KMS).
* `kek_ids()`: the versions between `min_decryption_version` and `latest_version`.

Batching (Vault's `batch_input`) keeps `rotate_all` fast over the network.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

KEY_BYTES: Final = 32  # AES-256 KEKs, data keys and the blind-index key
NONCE_BYTES: Final = 12
KEK_ID_MAX_LENGTH: Final = 64
KEYRING_FORMAT: Final = 1
_WRAP_LABEL: Final = b"crm-chaincode/kek-wrap/v1\x00"
_UNSAFE_MODE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO

#: How many records still use a KEK id (0 when it may be retired).
UsageCheck = Callable[[str], int]


class KeyProviderError(Exception):
    """A key provider could not do what was asked."""


class UnknownKekError(KeyProviderError):
    """No KEK with this id: never existed here, or retired. The data key cannot be unwrapped."""


class TamperedKeyError(KeyProviderError):
    """A wrapped data key failed authentication (altered, or presented under another KEK id)."""


class KekInUseError(KeyProviderError):
    """Refused to retire a KEK that records still use (or the current KEK)."""

    def __init__(self, kek_id: str, count: int, message: str | None = None) -> None:
        self.kek_id = kek_id
        self.count = count
        super().__init__(message or f"KEK {kek_id} is still used by {count} record(s)")


class KeyringPermissionError(KeyProviderError):
    """The keyring file is not a private regular file."""


class KeyringFormatError(KeyProviderError):
    """The keyring file is not a keyring this code understands."""


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted by the KEK `kek_id`."""

    kek_id: str
    wrapped: bytes


@runtime_checkable
class KeyProvider(Protocol):
    """Holds the key-encryption keys; see the module docstring for a KMS / Vault transit mapping.

    Implementations are safe to call from several threads.
    """

    def current_kek_id(self) -> str:
        """The id of the KEK that `wrap` uses now."""
        ...

    def wrap(self, data_key: bytes) -> WrappedKey:
        """Encrypt a 32-byte data key under the current KEK."""
        ...

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """The data key; `UnknownKekError` if the KEK is gone, `TamperedKeyError` if altered."""
        ...

    def rotate(self) -> str:
        """Make a new KEK the current one and return its id (older KEKs still unwrap)."""
        ...

    def retire(self, kek_id: str, *, in_use: UsageCheck | None = None) -> None:
        """Destroy a KEK; `KekInUseError` if it is current or `in_use(kek_id)` is not 0."""
        ...

    def kek_ids(self) -> list[str]:
        """The ids of the KEKs that can still unwrap, oldest first."""
        ...


@dataclass(frozen=True)
class KekInfo:
    """What may be shown about a KEK (never its material)."""

    id: str
    created_at: str
    current: bool
    retired_at: str | None = None  # set for a retired KEK, whose material is gone

    @property
    def retired(self) -> bool:
        return self.retired_at is not None


@dataclass(frozen=True)
class _Kek:
    id: str
    key: bytes
    created_at: str


@dataclass(frozen=True)
class _Keyring:
    current: str
    keks: tuple[_Kek, ...]
    retired: tuple[dict[str, str], ...]
    index_key: bytes | None
    index_key_created_at: str | None

    def find(self, kek_id: str) -> _Kek | None:
        return next((kek for kek in self.keks if kek.id == kek_id), None)

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "format": KEYRING_FORMAT,
            "current": self.current,
            "keks": [
                {"id": kek.id, "key": _b64(kek.key), "created_at": kek.created_at}
                for kek in self.keks
            ],
            "retired": list(self.retired),
        }
        if self.index_key is not None:
            document["index_key"] = {
                "key": _b64(self.index_key),
                "created_at": self.index_key_created_at,
            }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise KeyringFormatError(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except ValueError:
        raise KeyringFormatError(f"{what} is not valid base64") from None
    if len(data) != KEY_BYTES:
        raise KeyringFormatError(f"{what} must be {KEY_BYTES} bytes, not {len(data)}")
    return data


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_kek_id() -> str:
    return f"kek-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def _new_kek() -> _Kek:
    return _Kek(id=_new_kek_id(), key=secrets.token_bytes(KEY_BYTES), created_at=_timestamp())


def _wrap_aad(kek_id: str) -> bytes:
    return _WRAP_LABEL + kek_id.encode("utf-8")


def _parse_keyring(raw: bytes, path: Path) -> _Keyring:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyringFormatError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
        raise KeyringFormatError(f"{path} is not a format-{KEYRING_FORMAT} keyring")
    entries = document.get("keks")
    if not isinstance(entries, list) or not entries:
        raise KeyringFormatError(f"{path} holds no KEKs")
    keks: list[_Kek] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise KeyringFormatError(f"{path}: every KEK needs an id")
        kek_id: str = entry["id"]
        if not kek_id or len(kek_id) > KEK_ID_MAX_LENGTH:
            raise KeyringFormatError(f"{path}: KEK id {kek_id!r} is empty or too long")
        keks.append(
            _Kek(
                id=kek_id,
                key=_unb64(entry.get("key"), f"KEK {kek_id}"),
                created_at=str(entry.get("created_at", "")),
            )
        )
    if len({kek.id for kek in keks}) != len(keks):
        raise KeyringFormatError(f"{path}: duplicate KEK ids")
    current = document.get("current")
    if not isinstance(current, str) or current not in {kek.id for kek in keks}:
        raise KeyringFormatError(f"{path}: the current KEK {current!r} is not in the keyring")
    retired = document.get("retired", [])
    if not isinstance(retired, list) or not all(isinstance(item, dict) for item in retired):
        raise KeyringFormatError(f"{path}: 'retired' must be a list of objects")
    index_key: bytes | None = None
    index_created: str | None = None
    index_entry = document.get("index_key")
    if index_entry is not None:
        if not isinstance(index_entry, dict):
            raise KeyringFormatError(f"{path}: 'index_key' must be an object")
        index_key = _unb64(index_entry.get("key"), "the index key")
        index_created = str(index_entry.get("created_at", ""))
    return _Keyring(
        current=current,
        keks=tuple(keks),
        retired=tuple({str(k): str(v) for k, v in item.items()} for item in retired),
        index_key=index_key,
        index_key_created_at=index_created,
    )


def _check_private(st: os.stat_result, path: Path) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeyringPermissionError(f"{path} is not a regular file")
    if st.st_mode & _UNSAFE_MODE_BITS:
        raise KeyringPermissionError(
            f"refusing to use keyring {path}: mode {stat.S_IMODE(st.st_mode):04o} lets group or "
            f"others access it; it holds the keys to every customer record. Run `chmod 600 {path}` "
            "and consider the keys exposed if others could read it."
        )


class KeyringFileProvider:
    """KEKs (and the blind-index key) in a local JSON keyring; see the module docstring.

    The file is read on first use and re-read whenever it changed on disk (another process
    rotated or retired), so several gateway processes can share it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._mutex = threading.RLock()
        self._keyring: _Keyring | None = None
        self._signature: tuple[int, int, int] | None = None
        self._ciphers: dict[str, AESGCM] = {}

    # --- KeyProvider ---------------------------------------------------------------------------

    def current_kek_id(self) -> str:
        return self._load().current

    def wrap(self, data_key: bytes) -> WrappedKey:
        if len(data_key) != KEY_BYTES:
            raise ValueError(f"a data key must be {KEY_BYTES} bytes")
        keyring = self._load()
        kek_id = keyring.current
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._cipher(keyring, kek_id).encrypt(nonce, data_key, _wrap_aad(kek_id))
        return WrappedKey(kek_id=kek_id, wrapped=nonce + sealed)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        keyring = self._load()
        if keyring.find(wrapped.kek_id) is None:
            keyring = self._reload()  # another process may have just rotated
        if keyring.find(wrapped.kek_id) is None:
            raise UnknownKekError(f"no KEK {wrapped.kek_id!r} in {self.path} (retired or foreign)")
        blob = wrapped.wrapped
        if len(blob) != NONCE_BYTES + KEY_BYTES + 16:
            raise TamperedKeyError("wrapped data key has the wrong length")
        try:
            data_key = self._cipher(keyring, wrapped.kek_id).decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _wrap_aad(wrapped.kek_id)
            )
        except InvalidTag:
            raise TamperedKeyError(
                f"wrapped data key failed authentication under {wrapped.kek_id}"
            ) from None
        return data_key

    def rotate(self) -> str:
        with self._exclusive() as keyring:
            kek = _new_kek()
            assert keyring is not None
            updated = _Keyring(
                current=kek.id,
                keks=(*keyring.keks, kek),
                retired=keyring.retired,
                index_key=keyring.index_key,
                index_key_created_at=keyring.index_key_created_at,
            )
            self._store(updated)
        log.info("keyring %s: new current KEK %s", self.path, kek.id)
        return kek.id

    def retire(self, kek_id: str, *, in_use: UsageCheck | None = None) -> None:
        """Remove the KEK's material from the keyring (only its id and dates stay, under "retired").

        `in_use` must be given (there is no safe default): it is asked, under the keyring lock,
        how many records still reference `kek_id`, and anything but 0 refuses. The current KEK is
        never retired. Records wrapped under a retired KEK are lost for good: that is the point
        once they are erased, and a disaster otherwise.
        """
        if in_use is None:
            raise KekInUseError(
                kek_id, -1, "refusing to retire a KEK without a usage check (in_use=...)"
            )
        with self._exclusive() as keyring:
            assert keyring is not None
            kek = keyring.find(kek_id)
            if kek is None:
                raise UnknownKekError(f"no KEK {kek_id!r} in {self.path}")
            if kek_id == keyring.current:
                raise KekInUseError(kek_id, -1, f"KEK {kek_id} is current; rotate first")
            count = in_use(kek_id)
            if count:
                raise KekInUseError(kek_id, count)
            updated = _Keyring(
                current=keyring.current,
                keks=tuple(k for k in keyring.keks if k.id != kek_id),
                retired=(
                    *keyring.retired,
                    {"id": kek.id, "created_at": kek.created_at, "retired_at": _timestamp()},
                ),
                index_key=keyring.index_key,
                index_key_created_at=keyring.index_key_created_at,
            )
            self._store(updated)
            self._ciphers.pop(kek_id, None)
        log.info("keyring %s: retired KEK %s", self.path, kek_id)

    def kek_ids(self) -> list[str]:
        return [kek.id for kek in self._load().keks]

    def describe(self) -> list[KekInfo]:
        """Every KEK of the keyring, usable ones (oldest first) then retired ones."""
        keyring = self._load()
        usable = [
            KekInfo(id=kek.id, created_at=kek.created_at, current=kek.id == keyring.current)
            for kek in keyring.keks
        ]
        retired = [
            KekInfo(
                id=entry.get("id", ""),
                created_at=entry.get("created_at", ""),
                current=False,
                retired_at=entry.get("retired_at", ""),
            )
            for entry in keyring.retired
        ]
        return usable + retired

    # --- the blind-index key -------------------------------------------------------------------

    def index_key(self) -> bytes:
        """The blind-index key kept in this keyring, generated on first call.

        WARNING: the blind-index key derives every customer id and blind index, and it must be
        THE SAME in every organisation of the consortium; a gateway with its own key creates
        identities nobody else can match and finds no duplicates. A generated key is only right
        for the first organisation (or development): share it out of band with every other
        member, who set it as `INDEX_KEY`. Losing it makes existing ids underivable; leaking it
        lets anyone with a list of e-mail addresses link them to customer ids.
        """
        keyring = self._load()
        if keyring.index_key is not None:
            return keyring.index_key
        with self._exclusive() as current:
            assert current is not None
            if current.index_key is not None:
                return current.index_key
            key = secrets.token_bytes(KEY_BYTES)
            self._store(
                _Keyring(
                    current=current.current,
                    keks=current.keks,
                    retired=current.retired,
                    index_key=key,
                    index_key_created_at=_timestamp(),
                )
            )
        log.warning(
            "generated a new blind-index key in %s: every organisation of the consortium must use "
            "this same key (INDEX_KEY), or customer ids will not match",
            self.path,
        )
        return key

    def has_index_key(self) -> bool:
        return self._load().index_key is not None

    # --- file handling ---------------------------------------------------------------------------

    def _cipher(self, keyring: _Keyring, kek_id: str) -> AESGCM:
        cipher = self._ciphers.get(kek_id)
        if cipher is None:
            kek = keyring.find(kek_id)
            if kek is None:
                raise UnknownKekError(f"no KEK {kek_id!r} in {self.path}")
            cipher = AESGCM(kek.key)
            self._ciphers[kek_id] = cipher
        return cipher

    def _load(self) -> _Keyring:
        """The keyring, read again if the file changed; created (under the lock) if missing."""
        with self._mutex:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                with self._exclusive() as keyring:
                    assert keyring is not None
                    return keyring
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)
            if self._keyring is not None and signature == self._signature:
                return self._keyring
            self._read()
            assert self._keyring is not None
            return self._keyring

    def _reload(self) -> _Keyring:
        with self._mutex:
            self._keyring = None
            return self._load()

    def _read(self) -> None:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise KeyringPermissionError(f"{self.path} is a symbolic link") from None
            raise
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            _check_private(st, self.path)
            raw = handle.read()
        keyring = _parse_keyring(raw, self.path)
        self._keyring = keyring
        self._signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._ciphers = {k: c for k, c in self._ciphers.items() if keyring.find(k) is not None}

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[_Keyring | None]:
        """Hold the inter-process lock and yield the keyring as on disk (creating it if absent)."""
        with self._mutex:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self.path.exists():
                    self._store(
                        _Keyring(
                            current=(kek := _new_kek()).id,
                            keks=(kek,),
                            retired=(),
                            index_key=None,
                            index_key_created_at=None,
                        )
                    )
                    log.info("created keyring %s with KEK %s", self.path, kek.id)
                self._read()
                yield self._keyring
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _store(self, keyring: _Keyring) -> None:
        """Write atomically (temp file, fsync, rename, fsync directory) with mode 0600."""
        directory = self.path.parent
        fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(keyring.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._read()
