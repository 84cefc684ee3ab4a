"""The gateway's relational store: engine and sessions, typed models, queries, migrations."""
