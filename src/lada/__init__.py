"""LaDa: federated reasoning distillation with learnability-aware data allocation."""

__version__ = "0.1.0"
