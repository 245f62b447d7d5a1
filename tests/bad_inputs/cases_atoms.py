"""Structure files for the atoms domain: positions, cells and labels that are not
finite, of the wrong shape or singular; files that are not structures; mixed good and
bad frames under ``--skip-failures`` (issue 17)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import ERROR, RESULT, SKIP, Case
from .atoms_files import QUICK, cluster, crystal, labelled, with_cell, write


def _diagnose(data: str, *extra: str, model: str = "emt") -> list[str]:
    return ["diagnose", "atoms", "--model", model, "--data", data, *QUICK, *extra]


def _one(name: str, make, *extra: str, model: str = "emt"):
    """argv of a diagnosis of the single structure ``make()`` written to ``name``."""
    return lambda tmp: _diagnose(write(tmp, name, make()), *extra, model=model)


def _skipped(bad_make, name: str = "mixed.extxyz"):
    """A good cluster, a bad frame, a good cluster, with --skip-failures."""
    return lambda tmp: _diagnose(write(tmp, name, cluster(seed=1), bad_make(), cluster(seed=2)),
                                 "--skip-failures", "--json", str(tmp / "result.json"))


def _kept_two(tmp: Path, out: str) -> None:
    result = json.loads((tmp / "result.json").read_text())
    assert result["n_samples"] == 2 and len(result["skipped"]) == 1, result.get("skipped")
    assert result["skipped"][0]["index"] == 1


# ------------------------------------------------------------------ structures


def nan_position():
    atoms = cluster()
    atoms.positions[3, 1] = np.nan
    return atoms


def inf_position():
    atoms = cluster()
    atoms.positions[0, 0] = np.inf
    return atoms


def huge_coordinates():
    atoms = cluster()
    atoms.positions *= 1e8  # A read as fm
    return atoms


def on_top():
    atoms = cluster()
    atoms.positions[5] = atoms.positions[4]
    return atoms


def across_boundary():
    atoms = with_cell(crystal(), np.eye(3) * 3.61)
    atoms.positions[1] = [3.60, 0.0, 0.0]  # 0.01 A from atom 0's image
    return atoms


def singular_cell():
    return with_cell(crystal(), [[3.61, 0, 0], [0, 3.61, 0], [3.61, 3.61, 0]])


def near_singular_cell():  # volume 5e-5 A^3: the hang
    return with_cell(crystal(), [[3.61, 0, 0], [0, 3.61, 0], [0.5, 0.5, 5e-5 / 3.61 ** 2]])


def thin_cell():  # volume fine per atom, lattice planes 0.05 A apart
    atoms = crystal()
    atoms = atoms[:1]
    return with_cell(atoms, [[100, 0, 0], [0, 100, 0], [0, 0, 0.05]])


def ill_conditioned_cell():
    atoms = crystal()[:1]
    return with_cell(atoms, [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 1e6]])


def sheared_cell():
    atoms = crystal()[:1]
    return with_cell(atoms, [[3.0, 0, 0], [3e5, 3.0, 0], [0, 0, 3.0]])


def zero_vector_periodic():
    return with_cell(crystal()[:1], [[5, 0, 0], [0, 5, 0], [0, 0, 0]])


def zero_vector_one_axis():
    return with_cell(cluster(), [[0, 0, 0], [0, 0, 0], [0, 0, 0]], pbc=[True, False, False])


def nan_cell():
    return with_cell(crystal(), [[3.61, 0, 0], [0, np.nan, 0], [0, 0, 3.61]])


def dependent_slab():  # pbc on x and y only, the two vectors parallel
    return with_cell(cluster(), [[5, 0, 0], [10, 0, 0], [0, 0, 0]], pbc=[True, True, False])


def left_handed():
    atoms = crystal()
    atoms.rattle(0.02, seed=4)
    return with_cell(atoms, -atoms.cell.array)


def slab_zero_vacuum_vector():  # periodic in x, y; the zero z vector is not periodic: fine
    atoms = cluster()
    atoms.center(vacuum=6.0)
    return with_cell(atoms, [[20, 0, 0], [0, 20, 0], [0, 0, 0]], pbc=[True, True, False])


def dense_cell():  # 4 atoms in 1 A^3: denser than any solid
    atoms = crystal()
    atoms.set_cell(np.eye(3), scale_atoms=True)
    return atoms


def unknown_element():
    atoms = cluster()
    atoms[0].symbol = "U"
    return atoms


def oxygen_for_pet():
    atoms = cluster()
    atoms[0].symbol = "O"
    return atoms


def empty_frame():
    import ase

    return ase.Atoms()


# ------------------------------------------------------------------ labels


def nan_energy():
    return labelled(cluster(), energy=float("nan"))


def inf_energy():
    return labelled(cluster(), energy=float("inf"))


def nan_forces():
    forces = np.zeros((13, 3))
    forces[7, 2] = np.nan
    return labelled(cluster(), forces=forces)


def nan_stress():
    return labelled(crystal(), forces=np.zeros((4, 3)),
                    stress=np.array([0.1, 0.1, 0.1, np.nan, 0, 0]))


def inf_stress():
    return labelled(crystal(), forces=np.zeros((4, 3)), stress=np.array([np.inf, 0, 0, 0, 0, 0]))


def _write_text(tmp: Path, name: str, text: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


TWO_COLUMN_FORCES = """2
Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:2 energy=-1.0 pbc="T T T"
Cu 0 0 0 0.1 0.2
Cu 2 2 2 0.1 0.2
"""

FOUR_STRESS = """2
Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 energy=-1.0 stress="1 2 3 4" pbc="T T T"
Cu 0 0 0
Cu 2 2 2
"""

ZERO_LATTICE_VECTOR = """2
Lattice="5 0 0 0 5 0 0 0 0" Properties=species:S:1:pos:R:3 pbc="T T T"
Cu 0 0 0
Cu 2 2 2
"""

NAN_LATTICE = """1
Lattice="5 0 0 0 nan 0 0 0 5" Properties=species:S:1:pos:R:3 pbc="T T T"
Cu 0 0 0
"""

NAN_ENERGY_TEXT = """1
Properties=species:S:1:pos:R:3:forces:R:3 energy=nan pbc="F F F"
Cu 0 0 0 0 0 0
"""


def _text_case(name: str, text: str | bytes, *extra: str):
    return lambda tmp: _diagnose(_write_text(tmp, name, text), *extra)


def _second_frame_bad(tmp: Path) -> list[str]:
    return _diagnose(write(tmp, "two.extxyz", cluster(), nan_energy()))


def _every_frame_bad(tmp: Path) -> list[str]:
    return _diagnose(write(tmp, "bad.extxyz", nan_position(), singular_cell()),
                     "--skip-failures")


def _left_handed_ok(tmp: Path, out: str) -> None:
    result = json.loads((tmp / "result.json").read_text())
    assert result["n_samples"] == 1 and not result.get("skipped")
    assert result["outputs"]["stress"]["equivariance_rmse"] < 1e-6  # EMT: exact


def _slab_ok(tmp: Path, out: str) -> None:
    result = json.loads((tmp / "result.json").read_text())
    assert result["n_samples"] == 1 and "stress" not in result["outputs"]


def _check_call(make, name: str = "structure"):
    def call(tmp: Path):
        from symplug_atoms.domain import check_structure

        return check_structure(make(), name)
    return call


def _directory(tmp: Path) -> list[str]:
    os.makedirs(tmp / "frames", exist_ok=True)
    write(tmp, "frames/a.extxyz", cluster())
    return _diagnose(str(tmp / "frames"))


CASES = [
    # positions
    Case("atoms/nan-position", "atoms-data", ERROR, r"nan\.extxyz frame 0: field 'positions' "
         r"holds NaN", argv=_one("nan.extxyz", nan_position)),
    Case("atoms/inf-position-traj", "atoms-data", ERROR, r"frame 0: field 'positions' holds NaN or "
         r"inf \(atom 0\)", argv=_one("inf.traj", inf_position)),
    Case("atoms/huge-coordinates", "atoms-data", ERROR, r"coordinate of \d\.\d+e\+08 A \(beyond",
         argv=_one("huge.extxyz", huge_coordinates), timeout=20),
    Case("atoms/atoms-on-top", "atoms-data", ERROR, r"atoms 4 and 5 overlap",
         argv=_one("top.extxyz", on_top)),
    Case("atoms/overlap-across-boundary", "atoms-data", ERROR, r"atoms 0 and 1 overlap \(distance 0\.01",
         argv=_one("image.extxyz", across_boundary)),
    Case("atoms/empty-frame", "atoms-data", ERROR, r"empty structure",
         argv=_one("empty.traj", empty_frame)),
    # cells
    Case("atoms/singular-cell", "atoms-data", ERROR, r"field 'cell' .* is singular",
         argv=_one("singular.extxyz", singular_cell)),
    Case("atoms/near-singular-cell", "atoms-data", ERROR, r"nearly singular: volume 1\.2\de-05 A\^3 "
         r"per atom", argv=_one("near.extxyz", near_singular_cell), timeout=20),
    Case("atoms/thin-cell", "atoms-data", ERROR, r"lattice planes 0\.05 A apart",
         argv=_one("thin.extxyz", thin_cell), timeout=20),
    Case("atoms/ill-conditioned-cell", "atoms-data", ERROR, r"ill-conditioned \(condition number "
         r"3\.33e\+05", argv=_one("long.extxyz", ill_conditioned_cell), timeout=20),
    Case("atoms/sheared-cell", "atoms-data", ERROR, r"ill-conditioned.*niggli_reduce",
         argv=_one("sheared.extxyz", sheared_cell), timeout=20),
    Case("atoms/dense-cell", "atoms-data", ERROR, r"volume 0\.25 A\^3 per atom < 0\.5",
         argv=_one("dense.extxyz", dense_cell)),
    Case("atoms/zero-cell-vector-periodic", "atoms-data", ERROR, r"zero vector along a periodic axis",
         argv=_one("zero.traj", zero_vector_periodic)),
    Case("atoms/pbc-x-zero-cell", "atoms-data", ERROR, r"periodic along \[True, False, False\]",
         argv=_one("pbcx.traj", zero_vector_one_axis)),
    Case("atoms/nan-cell-traj", "atoms-data", ERROR, r"field 'cell' .* holds NaN or inf",
         argv=_one("nancell.traj", nan_cell)),
    Case("atoms/dependent-slab-vectors", "atoms-data", ERROR, r"is singular",
         argv=_one("slab.traj", dependent_slab)),
    Case("atoms/zero-lattice-vector-extxyz", "atoms-data", ERROR, r"zero vector along a periodic",
         argv=_text_case("zero.extxyz", ZERO_LATTICE_VECTOR)),
    Case("atoms/nan-lattice-extxyz", "atoms-data", ERROR, r"holds NaN or inf|cannot read",
         argv=_text_case("nanlat.extxyz", NAN_LATTICE)),
    Case("atoms/left-handed-cell-is-fine", "atoms-data", RESULT,
         argv=lambda tmp: _diagnose(write(tmp, "left.extxyz", left_handed()), "--json",
                                    str(tmp / "result.json")), check=_left_handed_ok),
    Case("atoms/slab-zero-vacuum-vector-is-fine", "atoms-data", RESULT,
         argv=lambda tmp: _diagnose(write(tmp, "slab.traj", slab_zero_vacuum_vector()), "--json",
                                    str(tmp / "result.json")), check=_slab_ok),
    # labels
    Case("atoms/nan-energy-label", "atoms-data", ERROR, r"e\.extxyz frame 0: label 'energy' holds 1 "
         r"non-finite", argv=_one("e.extxyz", nan_energy)),
    Case("atoms/inf-energy-label", "atoms-data", ERROR, r"label 'energy' holds 1 non-finite value\(s\) "
         r"\(inf\)", argv=_one("inf.extxyz", inf_energy)),
    Case("atoms/nan-energy-written-by-hand", "atoms-data", ERROR, r"label 'energy'",
         argv=_text_case("hand.extxyz", NAN_ENERGY_TEXT)),
    Case("atoms/nan-forces-label", "atoms-data", ERROR, r"label 'forces' holds 1 non-finite",
         argv=_one("f.extxyz", nan_forces)),
    Case("atoms/nan-stress-label", "atoms-data", ERROR, r"label 'stress' holds 1 non-finite",
         argv=_one("s.extxyz", nan_stress)),
    Case("atoms/inf-stress-label-traj", "atoms-data", ERROR, r"label 'stress'.*\(inf\)",
         argv=_one("s.traj", inf_stress)),
    Case("atoms/two-column-forces", "atoms-data", ERROR, r"label 'forces' has shape \(2, 2\); "
         r"expected \(2, 3\)", argv=_text_case("forces2.extxyz", TWO_COLUMN_FORCES)),
    Case("atoms/four-component-stress", "atoms-data", ERROR, r"cannot read it.*stress",
         argv=_text_case("stress4.extxyz", FOUR_STRESS)),
    Case("atoms/second-frame-named", "atoms-data", ERROR, r"two\.extxyz frame 1: label 'energy'",
         argv=_second_frame_bad),
    # models and files
    Case("atoms/element-unknown-to-emt", "atoms-data", ERROR, r"No EMT-potential for U",
         argv=_one("u.extxyz", unknown_element)),
    Case("atoms/element-unknown-to-pet-cu", "atoms-data", ERROR, r"knows species \[29\], not \[8\]",
         argv=_one("o.extxyz", oxygen_for_pet, model="pet-cu")),
    Case("atoms/empty-file", "atoms-data", ERROR, r"empty\.extxyz: ase\.io cannot read it.*Empty file",
         argv=lambda tmp: _diagnose(_write_text(tmp, "empty.extxyz", ""))),
    Case("atoms/binary-garbage", "atoms-data", ERROR, r"garbage\.extxyz: ase\.io cannot read it",
         argv=lambda tmp: _diagnose(_write_text(tmp, "garbage.extxyz",
                                                bytes(range(256)) * 4))),
    Case("atoms/wrong-format-json", "atoms-data", ERROR, r"ase\.io cannot read it",
         argv=lambda tmp: _diagnose(_write_text(tmp, "frames.xyz", '{"not": "xyz"}\n'))),
    Case("atoms/directory-as-data", "atoms-data", ERROR, r"frames: a folder, not a structure file",
         argv=_directory),
    Case("atoms/missing-file", "atoms-data", ERROR, r"nowhere\.extxyz' does not exist",
         argv=lambda tmp: _diagnose(str(tmp / "nowhere.extxyz"))),
    # --skip-failures: flagged, counted, the good frames kept
    Case("atoms/skip-nan-position", "atoms-data", SKIP, r"field 'positions' holds NaN",
         argv=_skipped(nan_position), check=_kept_two),
    Case("atoms/skip-near-singular-cell", "atoms-data", SKIP, r"mixed\.extxyz frame 1: .*nearly singular",
         argv=_skipped(near_singular_cell), check=_kept_two, timeout=30),
    Case("atoms/skip-singular-cell", "atoms-data", SKIP, r"is singular",
         argv=_skipped(singular_cell), check=_kept_two),
    Case("atoms/skip-nan-energy-label", "atoms-data", SKIP, r"label 'energy'",
         argv=_skipped(nan_energy), check=_kept_two),
    Case("atoms/skip-nan-stress-label", "atoms-data", SKIP, r"label 'stress'",
         argv=_skipped(nan_stress), check=_kept_two),
    Case("atoms/skip-overlap", "atoms-data", SKIP, r"overlap", argv=_skipped(on_top),
         check=_kept_two),
    Case("atoms/skip-unknown-element", "atoms-data", SKIP, r"No EMT-potential for U",
         argv=_skipped(unknown_element), check=_kept_two),
    Case("atoms/skip-empty-frame-traj", "atoms-data", SKIP, r"empty structure",
         argv=_skipped(empty_frame, "mixed.traj"), check=_kept_two),
    Case("atoms/skip-every-frame-bad", "atoms-data", ERROR, r"every sample failed",
         argv=_every_frame_bad),
    # the checks as a library call, named by the caller
    Case("atoms/check-near-singular-call", "atoms-data", ERROR, r"^my cell: .*nearly singular",
         call=_check_call(near_singular_cell, "my cell"), timeout=10),
    Case("atoms/check-two-column-forces-call", "atoms-data", ERROR, r"label 'forces' has shape",
         call=_check_call(lambda: labelled(cluster(), forces=np.zeros((13, 2))))),
]
