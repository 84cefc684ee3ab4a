"""Assemble the long-lived parts of a running gateway or CLI command, once.

Everything a request or a command needs (settings, chain, artifacts, deployed contracts, signer
keys, database, pipeline) is built here and handed down; nothing else opens connections.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.audit import Anchorer, AnchorWorker
from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.connection import Chain, connect
from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.deployments import DeploymentStore, verify_record
from crm_gateway.chain.dev_secrets import refuse_development_secrets
from crm_gateway.chain.keystore import Keystore, KeystoreError, require_fast_signing
from crm_gateway.chain.migrations import MigrationReport, apply_migrations
from crm_gateway.config import ChainKind, Settings
from crm_gateway.indexer import ChainIndexer, IndexerWorker, ReadModel
from crm_gateway.pipeline.leases import Leases
from crm_gateway.pipeline.nonces import NonceAllocator
from crm_gateway.pipeline.sender import Sender
from crm_gateway.pipeline.watcher import Watcher
from crm_gateway.pipeline.worker import PipelineWorker
from crm_gateway.store.db import make_engine, upgrade_database
from crm_gateway.vault.blind_index import BlindIndexer, load_index_key
from crm_gateway.vault.keys import KeyringFileProvider

log = logging.getLogger(__name__)


def open_keystore(settings: Settings) -> Keystore:
    """The signer keys; on CHAIN_KIND=rpc never under the development password or published keys."""
    require_fast_signing()
    keystore = Keystore(
        settings.path(settings.keystore_dir),
        settings.keystore_password.get_secret_value(),
        scrypt_n=settings.keystore_scrypt_n,
    )
    refuse_development_secrets(settings, keystore.addresses())
    return keystore


def deployment_store(settings: Settings, chain: Chain) -> DeploymentStore:
    # The embedded chain dies with the process; a record of it on disk would only mislead.
    if chain.kind is ChainKind.EMBEDDED:
        return DeploymentStore(None, chain.chain_id, memory=chain.memory_deployments)
    return DeploymentStore(settings.path(settings.deployments_dir), chain.chain_id)


def deployer_account(
    settings: Settings, chain: Chain, keystore: Keystore, recorded: str | None = None
) -> LocalAccount:
    """The account that deploys; on a development chain it is created and funded if missing.

    Chosen in this order: DEPLOYER_ACCOUNT, the deployer the record names, the only key there is.
    """
    if settings.deployer_account or recorded:
        return keystore.unlock(settings.deployer_account or recorded or "")
    addresses = keystore.addresses()
    if len(addresses) > 1:
        raise KeystoreError(
            f"{keystore.directory} holds several keys; set DEPLOYER_ACCOUNT to the one that deploys"
        )
    if addresses:
        account = keystore.unlock(addresses[0])
    elif chain.kind is ChainKind.RPC:
        raise KeystoreError(
            f"no deployer key in {keystore.directory}: create one with "
            "`crm-chaincode accounts new` and fund it on the network"
        )
    else:
        account = keystore.create()
        log.info("created deployer account %s", account.address)
    if chain.kind is not ChainKind.RPC:
        chain.dev_fund(account.address, settings.dev_fund_wei)
    return account


def deploy(
    settings: Settings,
    chain: Chain,
    keystore: Keystore,
    on_step: Callable[[str, bool], None] | None = None,
    *,
    store: DeploymentStore | None = None,
) -> MigrationReport:
    """Apply pending migrations to the chain and record them."""
    store = store or deployment_store(settings, chain)
    return apply_migrations(
        settings=settings,
        chain=chain,
        deployer=deployer_account(settings, chain, keystore, store.load().deployer),
        artifacts=Artifacts(settings.path(settings.abi_dir)),
        store=store,
        on_step=on_step,
    )


def anchor_signer(settings: Settings, read_model: ReadModel, keystore: Keystore) -> str | None:
    """AUDIT_ANCHOR_ACCOUNT, else the first keystore account holding AUDITOR in the gateway's
    organisation (per the read model; the chain has the last word when the write is simulated)."""
    if settings.audit_anchor_account:
        return settings.audit_anchor_account
    auditors = set(read_model.holders_of("AUDITOR", org_id=settings.gateway_org_id))
    held = [address for address in keystore.addresses() if address in auditors]
    return held[0] if held else None


def portal_relayer(settings: Settings, read_model: ReadModel, keystore: Keystore) -> str | None:
    """PORTAL_RELAYER_ACCOUNT, else the first keystore account holding RELAYER in the gateway's
    organisation (per the read model; the chain has the last word when the write is simulated)."""
    if settings.portal_relayer_account:
        return settings.portal_relayer_account
    relayers = set(read_model.holders_of("RELAYER", org_id=settings.gateway_org_id))
    held = [address for address in keystore.addresses() if address in relayers]
    return held[0] if held else None


@dataclass
class Runtime:
    settings: Settings
    chain: Chain
    contracts: Contracts
    keystore: Keystore
    session_factory: sessionmaker[Session]
    pipeline: PipelineWorker
    vault: KeyringFileProvider
    indexer: BlindIndexer
    # The chain indexer's background worker, and the read model it keeps current.
    index_worker: IndexerWorker
    read_model: ReadModel
    # The access log's anchoring on-chain, and its background worker.
    anchorer: Anchorer
    anchor_worker: AnchorWorker
    # Who signs for which account and who runs the background work, among the processes
    # sharing the database (see `pipeline.leases`).
    leases: Leases

    @property
    def artifacts(self) -> Artifacts:
        return self.contracts.artifacts

    def anchor_signer(self) -> str | None:
        """The account that signs periodic anchors (see `anchor_signer`)."""
        return anchor_signer(self.settings, self.read_model, self.keystore)

    def portal_relayer(self) -> str | None:
        """The account that relays consent changes signed in the portal (see `portal_relayer`)."""
        return portal_relayer(self.settings, self.read_model, self.keystore)

    def close(self) -> None:
        self.anchor_worker.stop()
        self.index_worker.stop()
        self.pipeline.stop()
        try:
            self.leases.release_all()
        except Exception as exc:  # the database went away: the leases expire on their own
            log.warning("could not release leases: %s", exc)
        engine = self.session_factory.kw.get("bind")
        if engine is not None:
            engine.dispose()


def build_runtime(settings: Settings, *, chain: Chain | None = None) -> Runtime:
    """Connect, check the deployment record, unlock signer keys, open the database.

    On the embedded chain, which starts empty in every process, pending migrations are applied
    here; on the other chains deploying is an explicit admin step (`make run` does it for you).
    """
    chain = chain or connect(settings)
    keystore = open_keystore(settings)
    store = deployment_store(settings, chain)
    if chain.kind is ChainKind.EMBEDDED and not store.load().migrations:
        deploy(settings, chain, keystore, store=store)
    record = store.load()
    verify_record(record, chain, store.path)
    keystore.unlock_all()
    contracts = Contracts(chain, Artifacts(settings.path(settings.abi_dir)), record)

    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url, echo=settings.database_echo)
    sessions = sessionmaker(engine, expire_on_commit=False)
    nonces = NonceAllocator(chain.w3)
    leases = Leases(sessions, seconds=settings.lease_seconds)
    worker = PipelineWorker(
        Sender(
            contracts=contracts,
            keystore=keystore,
            session_factory=sessions,
            nonces=nonces,
            leases=leases,
            gas_limit_multiplier=settings.gas_limit_multiplier,
            max_batch_items=settings.pipeline_max_batch_items,
            max_batch_gas=settings.pipeline_max_batch_gas,
        ),
        Watcher(
            contracts=contracts,
            session_factory=sessions,
            nonces=nonces,
            resubmit_after_seconds=settings.resubmit_after_seconds,
            finality_seconds=settings.finality_seconds,
        ),
        sender_poll=settings.sender_poll_seconds,
        watcher_poll=settings.watcher_poll_seconds,
        leases=leases,
    )
    vault = KeyringFileProvider(settings.path(settings.vault_keyring_file))
    indexer = BlindIndexer(load_index_key(settings, vault))
    index_worker = IndexerWorker(
        ChainIndexer(
            contracts,
            sessions,
            max_block_range=settings.indexer_max_block_range,
            reorg_depth=settings.indexer_reorg_depth,
        ),
        poll=settings.indexer_poll_seconds,
        leases=leases,
    )
    read_model = ReadModel(engine)
    anchorer = Anchorer(
        sessions=sessions,
        contracts=contracts,
        pipeline=worker,
        org_id=settings.gateway_org_id,
        batch_size=settings.audit_anchor_batch_size,
    )
    return Runtime(
        settings,
        chain,
        contracts,
        keystore,
        sessions,
        worker,
        vault,
        indexer,
        index_worker,
        read_model,
        anchorer,
        AnchorWorker(
            anchorer,
            interval=settings.audit_anchor_interval_seconds,
            signer=functools.partial(anchor_signer, settings, read_model, keystore),
            leases=leases,
        ),
        leases,
    )
