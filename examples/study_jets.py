"""Remedies for learned symmetry compared on an equal budget: the reference jet tagger.

    python examples/study_jets.py --out docs/study/jets

Generates top and QCD jets once (Pythia 8 + FastJet, seeded,
:func:`symplug_jets.generate.generate_file`) and trains the particle-transformer
tagger (:mod:`symplug_jets.tagger_model`) four times on them with the same seed,
split, optimiser, batches and epochs (:func:`symplug_jets.train_tagger.train`),
varying only the model options:

* ``raw``: the shipped architecture (lab Cartesian p/E_jet features, class token);
* ``sh1``, ``sh3``: spherical harmonics (l_max = 1, 3) of the jet-frame directions
  instead of the lab Cartesian features;
* ``lorentz``: the raw trunk with the Lorentz-invariant readout.

It evaluates each, and the raw tagger averaged over SO(2) about the beam and about
the jet axis (:class:`symplug_jets.symmetrize.SymmetrizedTagger`), and writes
``study.json`` (atomically) and ``study.md``: AUC and 1/eps_B at eps_S = 0.3 and
0.5 on all test jets, with its binomial uncertainty, or "> N" when none of the N
background test jets passes (:func:`symplug_jets.metrics.rejection`); for SO(2)
about the beam, SO(2) about the jet axis (all test jets, degree 4) and SO(3) in the
lab (the first ``--so3-jets`` test jets, degree 2):
A of the score, its invariant fraction, the flip rate and the centred invariant
fraction of the hidden layers. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import symplug_jets as sj
from symplug_jets.generate import generate_file
from symplug_jets.metrics import auc, format_rejection, rejection
from symplug_jets.symmetrize import SymmetrizedTagger
from symplug_jets.taggers import CallableTagger, load_reference
from symplug_jets.train_tagger import MAX_PARTICLES, train
from study_common import write_study  # examples/ is the script's folder

VARIANTS = {"raw": {}, "sh1": {"sh_lmax": 1}, "sh3": {"sh_lmax": 3},
            "lorentz": {"readout": "lorentz"}}
SYMMETRIES = {"beam": ("lab", "SO2", 4), "jet_axis": ("jet", "SO2", 4), "so3": ("lab", "SO3", 2)}


def layers_of(options: dict) -> list[str]:
    """The hidden layers captured for a variant."""
    names = ["embed"] + (["direction"] if options.get("sh_lmax") is not None else [])
    names += ["blocks.0", "blocks.1"]
    return names + (["readout.weights"] if options.get("readout") == "lorentz" else ["pool"])


def performance(tagger, jets) -> dict:
    """AUC and 1/eps_B at eps_S = 0.3 and 0.5 (with its resolution) of a tagger
    ``f(p4, mask)`` on ``jets``."""
    with torch.no_grad():
        score = torch.cat([torch.as_tensor(tagger(torch.from_numpy(jets.p4[i:i + 256]),
                                                  torch.from_numpy(jets.mask[i:i + 256])))
                           for i in range(0, len(jets), 256)]).numpy()
    top = jets.labels[:, jets.label_names.index("label_Top")] > 0.5
    return {"auc": auc(score, top), "rejection_at_0.3": rejection(score, top, 0.3),
            "rejection_at_0.5": rejection(score, top, 0.5)}


def symmetry(tagger, jets, so3_jets: int, layers, convergence_so3: bool = True) -> dict:
    """A(score), invariant fraction, flip rate and layers' centred invariant fractions
    (SO3 on the first ``so3_jets`` jets)."""
    out = {}
    for key, (frame, group, degree) in SYMMETRIES.items():
        subset = jets.subset(np.arange(min(so3_jets, len(jets)))) if key == "so3" else jets
        res = sj.diagnose(tagger, subset, group=group, degree=degree, frame=frame,
                          layers=layers, progress=False,
                          check_convergence=convergence_so3 or key != "so3")
        score = res["outputs"]["score"]
        out[key] = {"A_score": score["equivariance_rmse"],
                    "invariant_fraction": sum(v for k, v in score["spectrum"].items()
                                              if k.startswith("0,")),
                    "flip_rate": res["summary"]["flip_rate"], "n_jets": len(subset),
                    "grid": res["grid"],
                    "convergence_max_abs_change": res.get("convergence", {}).get("max_abs_change"),
                    "layers": {n: v["invariant_fraction_centered"]
                               for n, v in res["layers"].items()}}
    return out


def markdown(result: dict) -> str:
    lines = ["| variant | AUC | 1/eps_B @0.3 | 1/eps_B @0.5 | A(score) beam / jet axis / SO3 "
             "| flip rate beam / jet axis / SO3 | inv. fraction of the last layer (centred), "
             "jet axis / SO3 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in result["rows"].items():
        perf, sym = row["performance"], row["symmetry"]
        a = " / ".join(f"{sym[k]['A_score']:.2g}" for k in SYMMETRIES)
        flips = " / ".join(f"{sym[k]['flip_rate']:.3f}" for k in SYMMETRIES)
        last = [list(sym[k]["layers"].values())[-1] if sym[k]["layers"] else None
                for k in ("jet_axis", "so3")]
        inv = " / ".join("-" if v is None else f"{v:.3f}" for v in last)
        lines.append(f"| {name} | {perf['auc']:.4f} | {format_rejection(perf['rejection_at_0.3'])} "
                     f"| {format_rejection(perf['rejection_at_0.5'])} | {a} | {flips} | {inv} |")
    n_b = next(iter(result["rows"].values()))["performance"]["rejection_at_0.3"]["n_background"]
    lines += ["", f"1/eps_B: ± the binomial uncertainty of eps_B on the {n_b} background test "
              f"jets; \"> {n_b}\": none of them passes, the largest value the test set resolves."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for study.json/.md")
    parser.add_argument("--n", type=int, default=1000, help="generated jets per class")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--so3-jets", type=int, default=64)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as work:
        jets = sj.read_root(generate_file(Path(work) / "jets.root", args.n, seed=args.seed),
                            max_particles=MAX_PARTICLES)
        generation = time.perf_counter() - start
        taggers = {}
        for name in args.only:
            t0 = time.perf_counter()
            _, payload, test_idx = train(jets, args.epochs, args.seed, threads=1, **VARIANTS[name])
            path = Path(work) / f"{name}.pt"
            torch.save(payload, path)
            taggers[name] = load_reference(path)  # float64, layers hookable
            rows[name] = {"options": VARIANTS[name], "train_seconds": time.perf_counter() - t0,
                          "best_val_auc": max(h["auc"] for h in payload["history"])}
    test = jets.subset(test_idx)
    for name, tagger in taggers.items():
        t0 = time.perf_counter()
        rows[name]["performance"] = performance(tagger.fn, test)
        rows[name]["symmetry"] = symmetry(tagger, test, args.so3_jets, layers_of(VARIANTS[name]))
        rows[name]["eval_seconds"] = time.perf_counter() - t0
        print(json.dumps({name: rows[name]}), flush=True)
    if "raw" in taggers:
        for key, (frame, group, degree) in (("beam", SYMMETRIES["beam"]),
                                            ("jet_axis", SYMMETRIES["jet_axis"])):
            t0 = time.perf_counter()
            fn = SymmetrizedTagger(taggers["raw"].fn, group, degree, frame=frame)
            name = f"raw + average ({group} {key.replace('_', ' ')}, degree {degree})"
            rows[name] = {"performance": performance(fn, test),
                          "symmetry": symmetry(CallableTagger(fn, name), test,
                                               args.so3_jets // 4, [], convergence_so3=False)}
            rows[name]["eval_seconds"] = time.perf_counter() - t0
            print(json.dumps({name: rows[name]}), flush=True)
    result = {"study": "jets", "n_jets": len(jets), "n_test": len(test),
              "generation_seconds": generation,
              "budget": {"epochs": args.epochs, "seed": args.seed, "batch": 64, "lr": 2e-3,
                         "optimizer": "Adam, best validation AUC kept", "d": 32, "blocks": 2,
                         "split": "70/15/15", "max_particles": MAX_PARTICLES, "threads": 1,
                         "augmentation": "none (jets arrive at all azimuths)"},
              "symmetries": {k: {"frame": f, "group": g, "degree": d}
                             for k, (f, g, d) in SYMMETRIES.items()},
              "so3_note": f"SO3 on the first {args.so3_jets} test jets; for the averaged "
                          f"taggers on the first {args.so3_jets // 4}, without convergence check",
              "rows": rows, "seconds": time.perf_counter() - start,
              "command": "python examples/study_jets.py " + " ".join(argv or [])}
    write_study(result, markdown(result), args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
