"""Where events come from: followed files, their identities and checkpoints."""
