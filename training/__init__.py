"""Networks, data, masks, losses and the training loop."""
