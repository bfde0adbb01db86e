"""Reading images, mask files and dataset archives, and drawing masks: what training, metrics, inference and
the dataset tool all read."""
