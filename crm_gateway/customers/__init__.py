"""Customers' personal data as a domain model (validation and normalisation, no storage)."""
