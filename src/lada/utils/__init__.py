"""Small shared utilities: seeding, atomic file writes, model state files."""
