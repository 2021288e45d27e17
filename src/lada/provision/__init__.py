"""Models made or fetched before a run: zoo pretraining (prepare), real checkpoints (fetch) and their warm-up."""
