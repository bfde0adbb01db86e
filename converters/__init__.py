"""Converters of foreign network files (the official CoModGAN TensorFlow pickles) into our snapshot format."""
