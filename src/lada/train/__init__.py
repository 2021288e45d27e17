"""Training: tokenised batching, log-probabilities, the shared training loop and SFT."""
