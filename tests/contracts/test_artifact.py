"""The committed artifact: deployable size and the custom-error ABI the gateway decodes."""

from __future__ import annotations

EIP170_LIMIT = 24_576


def test_deployed_bytecode_fits_eip170(consortium_artifact):
    code = bytes.fromhex(consortium_artifact["deployedBytecode"][2:])
    assert 0 < len(code) <= EIP170_LIMIT
    assert consortium_artifact["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    assert consortium_artifact["settings"]["evmVersion"] == "cancun"


def test_deployed_code_has_artifact_size(chain, consortium, consortium_artifact):
    # Equal up to the immutable `proposalLifetime`, which the constructor fills in.
    code = bytes(chain.w3.eth.get_code(consortium.address))
    assert len(code) == len(bytes.fromhex(consortium_artifact["deployedBytecode"][2:]))


def test_error_selectors_are_unique(consortium_artifact):
    from eth_utils import function_signature_to_4byte_selector

    errors = [e for e in consortium_artifact["abi"] if e["type"] == "error"]
    selectors = {
        function_signature_to_4byte_selector(
            f"{e['name']}({','.join(p['type'] for p in e['inputs'])})"
        )
        for e in errors
    }
    assert len(selectors) == len(errors)
