"""adaptrl: meta-learning and meta-reinforcement learning with PyTorch and Gymnasium."""

__version__ = "0.1.0"
