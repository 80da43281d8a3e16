"""What exists where and when: Gaussians, Scene4D and the loaders of every scene format."""
