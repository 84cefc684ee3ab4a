"""`crm-chaincode`: the admin commands (node, compile, deploy, serve, run, orgs, roles, apikeys)."""

from crm_gateway.cli.main import app

__all__ = ["app"]
