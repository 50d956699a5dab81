"""What the unpaired image-translation baselines (``cyclegan``, ``cut``) share: networks, losses, schedule, the fit."""
