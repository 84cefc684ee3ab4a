"""The personal-data vault: envelope encryption, blind indexes, commitments, key rotation.

* `keys`: key-encryption keys (KEKs) behind the `KeyProvider` protocol; `KeyringFileProvider` keeps
  them in a local JSON keyring (mode 0600), together with the blind-index key unless `INDEX_KEY`
  is set.
* `envelope`: `seal` / `open_sealed`, AES-256-GCM with a fresh data key per record, the data key
  wrapped by the current KEK; any tampering raises `TamperedRecordError`.
* `blind_index`: keyed HMACs of the normalised e-mail and phone (deduplication without clear
  text) and the consortium-wide customer id.
* `commitment`: canonical JSON of a profile and keccak256(salt || canonical), the on-chain
  commitment.
* `records`: the two above put together for a customer record (salt sealed inside the payload).
* `rotation`: re-wrap every data key under the newest KEK, resumably, then retire the old KEK.

Nothing here touches the chain or HTTP; `vault.rotation` is the only module that reads the store.
"""
