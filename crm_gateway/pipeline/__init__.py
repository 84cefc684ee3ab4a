"""The write pipeline: outbox rows in the database become signed transactions on the chain.

`outbox` records a write in the caller's database transaction; `sender` simulates, signs and
submits rows in order; `watcher` records receipts and re-broadcasts what a node lost; `worker`
runs both in the background. Every chain write of the product goes this way.
"""
