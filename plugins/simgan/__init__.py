"""The SimGAN refiner plugin (Shrivastava et al., CVPR 2017): ``refiner.py`` the refiner, config and presets."""
