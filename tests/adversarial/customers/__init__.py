"""The customer decides: wallet takeover, held-back or re-aimed signed consents, and withdrawal."""
