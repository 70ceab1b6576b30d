"""verl adapters: datasets, simrl tools as verl BaseTools, the reward module, Hydra overrides, launch."""
