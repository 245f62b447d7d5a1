"""Limits of the atoms settings, shared by the command line and the library."""

MAX_TIMESTEP_FS = 10.0  # MD time step, fs: NVE of atoms diverges beyond a few fs
