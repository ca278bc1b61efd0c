"""Neural network modules: VAE, denoising U-Net, image encoder, splatting, renderer, perceptual loss."""
