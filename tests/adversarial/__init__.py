"""Tests named for the threat: what a misbehaving member organisation (its admins, stewards,
relayers, auditors) tries, and how it is refused."""
