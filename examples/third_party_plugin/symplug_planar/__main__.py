"""python -m symplug_planar OUT.npz [SAMPLES] [POINTS]: write random planar clouds."""

import sys

from symplug_planar import make_data

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m symplug_planar OUT.npz [SAMPLES] [POINTS]")
    print(make_data(sys.argv[1], *(int(a) for a in sys.argv[2:4])))
