import os

import pytest
import torch

pytest_plugins = ["pytester"]

torch.set_default_dtype(torch.float64)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker (and per subprocess a test starts): two workers with
    # two OpenMP threads each on two cores make small torch calls up to 60x slower
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="module")
def cluster():
    """A rattled Cu13 icosahedron (no symmetry left), the atoms tests' default structure."""
    import ase.cluster

    atoms = ase.cluster.Icosahedron("Cu", 2)
    atoms.rattle(0.05, seed=1)
    return atoms
