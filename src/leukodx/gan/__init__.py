"""Synthetic cells: DCGAN, WGAN-GP and conditional GAN; quality and memorisation measures."""
