"""Domain rules: what may be done, by whom, and which chain write or read does it."""
