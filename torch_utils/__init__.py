"""PyTorch utilities below the training code: shape checks, device choice and the custom ops."""
