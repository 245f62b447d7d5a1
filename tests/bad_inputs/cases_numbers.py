"""Numbers that would mean nothing: a zero or constant response, a one-element grid,
NaN labels, and option ranges of ``diagnose``, ``quadrature`` and ``track`` (issue 17).
A zero response states its relative error and invariant fraction undefined (null, with
the reason), never 0.0, as do a layer that is 0 everywhere (all its fractions) and one
that is the same on every copy of every sample (its centred fractions); a one-element grid and out-of-range options are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import ERROR, RESULT, SKIP, Case
from .atoms_files import FRAMES, QUICK, cluster, crystal, labelled, write

ZERO = "bad_inputs.calculators:ZeroCalculator"
CONSTANT = "bad_inputs.calculators:ConstantCalculator"


def _diagnose(*extra: str, model: str = "emt", data: str = str(FRAMES)) -> list[str]:
    return ["diagnose", "atoms", "--model", model, "--data", data, "--max-samples", "1",
            *QUICK, *extra]


def _zero(tmp: Path) -> list[str]:
    data = write(tmp, "frames.extxyz", cluster(), crystal())
    return ["diagnose", "atoms", "--model", ZERO, "--trust-model", "--data", data, *QUICK,
            "--json", str(tmp / "result.json")]


def _zero_undefined(tmp: Path, out: str) -> None:
    result = json.loads((tmp / "result.json").read_text())
    for name, o in result["outputs"].items():
        assert o["equivariance_rmse"] == 0.0, name  # zero is exactly equivariant
        assert o["relative_error"] is None and o["invariant_fraction"] is None, name
        assert "zero response" in o["undefined"]
        assert all(p["relative_error"] is None for p in o["per_sample"])
    assert not result["findings"], result["findings"]  # nothing concluded from it
    assert "undefined  undefined" in out and "zero response" in out


def _zero_labelled(tmp: Path) -> list[str]:
    return ["diagnose", "atoms", "--model", ZERO, "--trust-model", "--data", str(FRAMES),
            "--max-samples", "2",
            *QUICK, "--json", str(tmp / "result.json")]


def _zero_labelled_check(tmp: Path, out: str) -> None:
    from symplug.report import symmetry_verdict

    result = json.loads((tmp / "result.json").read_text())
    forces = result["outputs"]["forces"]
    assert forces["relative_error"] is None and forces["bias_variance"]["n_labelled"] == 2
    assert symmetry_verdict(forces)["verdict"] == "unknown"


def _constant_check(tmp: Path, out: str) -> None:
    result = json.loads((tmp / "result.json").read_text())
    energy, forces = result["outputs"]["energy"], result["outputs"]["forces"]
    assert abs(energy["invariant_fraction"] - 1.0) < 1e-9 and energy["equivariance_rmse"] < 1e-9
    assert forces["relative_error"] > 0.99  # a lab-fixed force: all of it breaks the symmetry


def _nan_labels(tmp: Path) -> list[str]:
    forces = np.zeros((13, 3))
    forces[:2] = np.nan
    data = write(tmp, "labels.extxyz", labelled(cluster(seed=1)),
                 labelled(cluster(seed=2), forces=forces), labelled(cluster(seed=3)))
    return ["diagnose", "atoms", "--model", "emt", "--data", data, *QUICK, "--skip-failures",
            "--json", str(tmp / "result.json")]


def _nan_labels_check(tmp: Path, out: str) -> None:
    result = json.loads((tmp / "result.json").read_text())
    assert result["n_samples"] == 2
    for o in result["outputs"].values():
        split = o.get("bias_variance")
        assert split is None or all(v is None or np.isfinite(v) for v in split.values())
    assert not any("inf" in f["evidence"] for f in result["findings"])


def _zero_and_constant_layers(tmp: Path):
    """A layer that is 0 everywhere, one that is the same on every copy of every sample,
    beside a linear layer: diagnosed, reported and tracked."""
    import torch

    import symplug
    from symplug.report import write_report
    from symplug.testing import rotate_points
    from symplug.training.tracking import track_document, track_entry, write_track

    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(12, 8).double()
            self.zero, self.constant = torch.nn.Identity(), torch.nn.Identity()

        def forward(self, x):
            h = self.linear(x.flatten(1))
            return {"energy": h.sum(-1) + self.zero(0.0 * h).sum(-1)
                    + self.constant(torch.ones_like(h)).sum(-1)}

    domain = symplug.Domain("points", rotate_points, {"energy": symplug.Output("0e", "eV")})
    clouds = [torch.randn(4, 3, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
              for s in range(3)]
    layers = ["linear", "zero", "constant"]
    result = symplug.diagnose(Layers(), clouds, domain, degree=2, layers=layers, progress=False)
    write_report({"layers": result}, tmp / "report")
    entry, grid = track_entry(Layers(), clouds, domain, group="O3", degree=2, layers=layers,
                              epoch=1)
    (tmp / "track").mkdir()
    written = write_track(track_document("points", "O3", grid, [entry]), tmp / "track")
    return result, written


def _layers_undefined(_tmp: Path, value) -> None:
    import math

    import metatensor.torch

    result, written = value
    zero, constant, linear = (result["layers"][n] for n in ("zero", "constant", "linear"))
    assert zero["invariant_fraction"] is None and zero["truncation"] is None
    assert set(zero["spectrum"].values()) == {None} and "zero activations" in zero["undefined"]
    assert zero["per_sample_invariant_fraction"] == [None] * 3
    assert abs(constant["invariant_fraction"] - 1.0) < 1e-12  # raw: defined, exactly invariant
    assert constant["invariant_fraction_centered"] is None and "constant" in constant["undefined"]
    assert "undefined" not in linear and linear["invariant_fraction_centered"] is not None
    assert not any("zero" in f["where"] or "constant" in f["where"] for f in result["findings"])
    values = metatensor.torch.load(str(written["mts"])).block(0).values
    assert math.isnan(values[1, 0]) and math.isnan(values[2, 1])  # NaN where undefined
    assert written["png"].exists()


def _library_degree_zero(tmp: Path):
    from ase.calculators.emt import EMT
    from symplug_atoms.domain import diagnose

    return diagnose(EMT(), [cluster()], degree=0, check_convergence=False, progress=False)


def _library_identity_grid(tmp: Path):
    from ase.calculators.emt import EMT
    from symplug.quadrature import quadrature
    from symplug_atoms.domain import diagnose

    return diagnose(EMT(), [cluster()], grid=quadrature("SO3", 0), check_convergence=False,
                    progress=False)


CASES = [
    # a zero or constant response
    Case("numbers/zero-model-undefined", "numbers", RESULT, argv=_zero, check=_zero_undefined),
    Case("numbers/zero-model-with-labels", "numbers", RESULT, argv=_zero_labelled,
         check=_zero_labelled_check),
    Case("numbers/constant-model", "numbers", RESULT,
         argv=_diagnose("--json", "{tmp}/result.json", "--trust-model", model=CONSTANT),
         check=_constant_check),
    Case("numbers/zero-and-constant-layers-undefined", "numbers", RESULT,
         call=_zero_and_constant_layers, check=_layers_undefined),
    # one-element grids
    Case("numbers/degree-zero", "numbers", ERROR, r"argument --degree: must be >= 1, got 0",
         argv=_diagnose("--degree", "0")),
    Case("numbers/degree-negative", "numbers", ERROR, r"argument --degree: must be >= 1, got -2",
         argv=_diagnose("--degree", "-2")),
    Case("numbers/library-degree-zero", "numbers", ERROR, r"degree 0 gives a .* grid of 2 "
         r"element\(s\), exact to band 0 only: a diagnosis needs a grid exact to band >= 1",
         call=_library_degree_zero),
    Case("numbers/library-identity-grid", "numbers", ERROR, r"grid of 1 element\(s\)",
         call=_library_identity_grid),
    Case("numbers/haar-one-element", "numbers", ERROR, r"argument --n: must be >= 2, got 1",
         argv=_diagnose("--kind", "haar", "--n", "1")),
    # NaN labels: refused where they enter, counted under --skip-failures
    Case("numbers/nan-labels-skipped-not-findings", "numbers", SKIP, r"label 'forces' holds 6 "
         r"non-finite", argv=_nan_labels, check=_nan_labels_check),
    # option ranges
    Case("options/max-samples-negative", "options", ERROR, r"argument --max-samples: must be >= 1, "
         r"got -1", argv=_diagnose("--max-samples", "-1")),
    Case("options/max-samples-zero", "options", ERROR, r"argument --max-samples: must be >= 1, got 0",
         argv=_diagnose("--max-samples", "0")),
    Case("options/lmax-negative", "options", ERROR, r"argument --lmax: must be >= 0",
         argv=_diagnose("--lmax", "-1")),
    Case("options/seed-negative", "options", ERROR, r"argument --seed: must be >= 0",
         argv=_diagnose("--seed", "-7")),
    Case("options/chunk-size-zero", "options", ERROR, r"argument --chunk-size: must be >= 1",
         argv=_diagnose("--chunk-size", "0")),
    Case("options/partition-size-zero", "options", ERROR, r"argument --partition-size: must be >= 1",
         argv=_diagnose("--partition-size", "0")),
    Case("options/workers-zero", "options", ERROR, r"argument --workers: must be >= 1",
         argv=_diagnose("--workers", "0")),
    Case("options/finer-degree-zero", "options", ERROR, r"argument --finer-degree: must be >= 1",
         argv=_diagnose("--finer-degree", "0")),
    Case("options/degree-not-an-integer", "options", ERROR, r"argument --degree: expected an "
         r"integer, got '2\.5'", argv=_diagnose("--degree", "2.5")),
    Case("options/quadrature-n-zero", "options", ERROR, r"argument --n: must be >= 1",
         argv=["quadrature", "--kind", "haar", "--n", "0"]),
    Case("options/quadrature-seed-negative", "options", ERROR, r"argument --seed: must be >= 0",
         argv=["quadrature", "--kind", "haar", "--n", "4", "--seed", "-1"]),
    Case("options/track-degree-zero", "options", ERROR, r"argument --degree: must be >= 1",
         argv=["track", "atoms", "--checkpoints", "x.pt", "--data", str(FRAMES), "--degree", "0",
               "--out", "{tmp}/tr"]),
    Case("options/track-max-samples-zero", "options", ERROR, r"argument --max-samples: must be >= 1",
         argv=["track", "atoms", "--checkpoints", "x.pt", "--data", str(FRAMES), "--max-samples",
               "0", "--out", "{tmp}/tr"]),
    Case("options/demo-seed-negative", "options", ERROR, r"argument --seed: must be >= 0",
         argv=["demo", "--seed", "-1", "--quick"]),
]
