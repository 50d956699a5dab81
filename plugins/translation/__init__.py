"""What the unpaired image-translation baselines (``cyclegan``, ``cut``) share: networks, losses, fit loop."""
