"""Boosts of jet constituents: scikit-hep ``vector`` (what ``symplug_jets.boost`` uses)
against the hand-written numpy formula it replaced, same inputs, same answers.

    python benchmarks/bench_vector.py [--quick] [--json PATH]

J jets of P constituents (E, px, py, pz) GeV, boosted by rapidity 0.7 along the beam
(``boostZ``) and along each jet's axis (``boost_beta3``); best of ``--repeat`` wall
times on one thread, and the largest relative difference of the two results.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def hand_boost(p4: np.ndarray, rapidity: float, axis: str) -> np.ndarray:
    """The former hand-written boost: E' = ch E + sh p.n, p' = p + ((ch-1) p.n + sh E) n."""
    if axis == "beam":
        n = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (p4.shape[0], 3))
    else:
        total = p4[..., 1:].sum(axis=1)
        n = total / np.linalg.norm(total, axis=1, keepdims=True)
    e, p = p4[..., 0], p4[..., 1:]
    par = np.einsum("jpi,ji->jp", p, n)
    ch, sh = np.cosh(rapidity), np.sinh(rapidity)
    p_new = p + ((ch - 1.0) * par + sh * e)[..., None] * n[:, None, :]
    return np.concatenate([(ch * e + sh * par)[..., None], p_new], axis=-1)


def jets(n_jets: int, n_particles: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p3 = rng.normal(size=(n_jets, n_particles, 3)) * 10
    p3[..., 2] += 50
    mass = rng.uniform(0, 0.2, size=(n_jets, n_particles))
    return np.concatenate([np.sqrt((p3 ** 2).sum(-1) + mass ** 2)[..., None], p3], axis=-1)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    import torch

    from symplug_jets.action import boost

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 jets, one repeat")
    parser.add_argument("--jets", type=int, default=20_000)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    n_jets, repeat = (500, 1) if args.quick else (args.jets, args.repeat)
    p4 = jets(n_jets, args.particles)
    rows = []
    print(f"{n_jets} jets x {args.particles} constituents, rapidity 0.7, best of {repeat}")
    print(f"{'axis':<6}{'vector (s)':>12}{'hand (s)':>10}{'ratio':>7}{'max rel diff':>14}")
    for axis in ("beam", "jet"):
        ours, hand = boost(p4, 0.7, axis), hand_boost(p4, 0.7, axis)
        diff = float(np.abs(ours - hand).max() / np.abs(hand).max())
        t_vec = best(lambda: boost(p4, 0.7, axis), repeat)
        t_hand = best(lambda: hand_boost(p4, 0.7, axis), repeat)
        rows.append({"axis": axis, "vector_seconds": t_vec, "hand_seconds": t_hand,
                     "max_relative_difference": diff})
        print(f"{axis:<6}{t_vec:>12.4f}{t_hand:>10.4f}{t_vec / t_hand:>7.2f}{diff:>14.1e}")
        if diff > 1e-12:
            raise SystemExit(f"vector and the hand-written boost disagree by {diff:.1e}")
    out = {"jets": n_jets, "particles": args.particles, "repeat": repeat, "rows": rows}
    if args.json:
        from symplug.result import write_json

        write_json(out, args.json)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
