"""Capabilities over many processes: pre-fork workers (:mod:`.workers`)."""
