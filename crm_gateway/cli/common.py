"""What every admin command shares: settings, one-sentence errors, and the chain runtime."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.console import Console

from crm_gateway.chain.anvil import AnvilError
from crm_gateway.chain.artifacts import ArtifactNotFound
from crm_gateway.chain.compiler import CompilerError
from crm_gateway.chain.connection import ChainUnavailable
from crm_gateway.chain.contracts import ContractNotDeployed
from crm_gateway.chain.deployments import DeploymentMismatch
from crm_gateway.chain.keystore import KeystoreError
from crm_gateway.chain.migrations import MigrationError
from crm_gateway.config import Settings, get_settings
from crm_gateway.services.errors import DomainError
from crm_gateway.vault.keys import KeyProviderError

console = Console()
err_console = Console(stderr=True)

# Failures an admin can act on; anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    AnvilError,
    ArtifactNotFound,
    ChainUnavailable,
    CompilerError,
    ContractNotDeployed,
    DeploymentMismatch,
    DomainError,
    KeyProviderError,
    KeystoreError,
    MigrationError,
)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def one_sentence_errors() -> Iterator[None]:
    """Turn an expected failure into one line on stderr and a non-zero exit."""
    try:
        yield
    except EXPECTED_ERRORS as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def settings() -> Settings:
    return get_settings()
