"""Development secrets that must never sign on a real network (`CHAIN_KIND=rpc`).

Two kinds are public knowledge: the default `KEYSTORE_PASSWORD` (it is in `config.py` and
`.env.example`), and the accounts Anvil and Hardhat fund by default, whose private keys come from
the published mnemonic "test test ... junk" (anyone can sign as them). On `embedded` and `anvil`
they are what makes a development chain work out of the box; on `rpc` a gateway holding them
would sign for an organisation with keys anyone has, so it refuses to start, in one sentence.
"""

from __future__ import annotations

from typing import Final

from eth_utils.address import to_checksum_address

from crm_gateway.chain.keystore import KeystoreError
from crm_gateway.config import DEVELOPMENT_KEYSTORE_PASSWORD, ChainKind, Settings

#: Accounts 0-9 of the mnemonic "test test test test test test test test test test test junk"
#: (m/44'/60'/0'/0/i): Anvil's and Hardhat's default funded accounts, their keys published.
DEVELOPMENT_ACCOUNTS: Final = frozenset(
    to_checksum_address(address)
    for address in (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
        "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
        "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
    )
)


class DevelopmentSecretRefused(KeystoreError):
    """A development password or key was configured for a real network."""


def refuse_development_secrets(settings: Settings, addresses: list[str]) -> None:
    """On `CHAIN_KIND=rpc`, refuse the development keystore password and the published keys.

    `addresses`: the accounts the keystore holds (from its file names; nothing is decrypted).
    """
    if settings.chain_kind is not ChainKind.RPC:
        return
    if settings.keystore_password.get_secret_value() == DEVELOPMENT_KEYSTORE_PASSWORD:
        raise DevelopmentSecretRefused(
            "refusing to start on CHAIN_KIND=rpc with the development KEYSTORE_PASSWORD "
            "(it is public): set KEYSTORE_PASSWORD to a secret of your own and re-encrypt the "
            "keystore with it"
        )
    published = sorted(a for a in addresses if to_checksum_address(a) in DEVELOPMENT_ACCOUNTS)
    if published:
        raise DevelopmentSecretRefused(
            f"refusing to start on CHAIN_KIND=rpc with the development key of {published[0]} in "
            f"the keystore (its private key is published with Anvil and Hardhat): remove it "
            f"from {settings.keystore_dir} and use keys of your own"
        )
