import torch

pytest_plugins = ["pytester"]

torch.set_default_dtype(torch.float64)
