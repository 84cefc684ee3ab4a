"""Caller authentication: API keys bound to an organisation and an on-chain account."""
