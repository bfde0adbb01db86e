"""Converters of foreign network files (the official CoModGAN TensorFlow pickles, the PyTorch port's .pth
generators) into our snapshot format."""
