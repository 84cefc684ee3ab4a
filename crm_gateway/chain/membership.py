"""The Consortium's `JoinOrganization` EIP-712 struct: an account's consent to join an
organisation with a role (OrganizationRoles.grantRoleBySig).

The gateway signs it with the keystore key of an account it created itself; an account whose key
the gateway does not hold signs it with its own wallet (`eth_signTypedData_v4` of
`join_organization_typed_data`) and the signature comes with the grant request.
"""

from __future__ import annotations

from typing import Any, Final

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from crm_gateway.chain.eip712 import DOMAIN_FIELDS, struct_fields

#: As OrganizationRoles spells it in `JOIN_ORGANIZATION_TYPEHASH` (domain "Consortium", "1").
JOIN_ORGANIZATION_TYPE: Final = (
    "JoinOrganization(address account,uint64 orgId,bytes32 role,uint256 nonce,uint256 deadline)"
)
JOIN_ORGANIZATION_FIELDS: Final = struct_fields(JOIN_ORGANIZATION_TYPE)


def join_organization_typed_data(
    *,
    chain_id: int,
    consortium: str,
    account: str,
    org_id: int,
    role: bytes,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The `eth_signTypedData_v4` JSON `account` signs to join `org_id` with `role`."""
    return {
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in DOMAIN_FIELDS],
            "JoinOrganization": [{"name": n, "type": t} for n, t in JOIN_ORGANIZATION_FIELDS],
        },
        "primaryType": "JoinOrganization",
        "domain": {
            "name": "Consortium",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(consortium),
        },
        "message": {
            "account": to_checksum_address(account),
            "orgId": org_id,
            "role": "0x" + role.hex(),
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def sign_join(key: LocalAccount, typed: dict[str, Any]) -> str:
    """`key`'s signature of the typed data, as `0x` hex."""
    signed = Account.sign_typed_data(key.key, full_message=typed)
    return "0x" + bytes(signed.signature).hex()
