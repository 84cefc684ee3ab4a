"""`python -m crm_gateway.cli`, the same as the `crm-chaincode` console script."""

from crm_gateway.cli.main import app

app()
