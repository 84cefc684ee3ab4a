"""Read the committed compiler artifacts under `abi/`."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from crm_gateway.chain.compiler import Artifact
from crm_gateway.chain.errors import ErrorDecoder


class ArtifactNotFound(LookupError):
    """No artifact of that contract name exists under `abi/`."""


class Artifacts:
    """The artifacts of one `abi/` directory, loaded once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._by_name: dict[str, Artifact] = {
            path.stem: Artifact.from_json(json.loads(path.read_text(encoding="utf-8")))
            for path in sorted(directory.glob("*.json"))
        }

    def __getitem__(self, name: str) -> Artifact:
        try:
            return self._by_name[name]
        except KeyError:
            raise ArtifactNotFound(
                f"no artifact abi/{name}.json; run `crm-chaincode compile`"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)

    @cached_property
    def error_decoder(self) -> ErrorDecoder:
        return ErrorDecoder(a.abi for a in self._by_name.values())
