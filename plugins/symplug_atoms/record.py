"""The ``atoms`` domain record: what the engine needs of it, named lazily.

Every function of the record is a :func:`symplug.lazy` reference, imported on first
use, so that listing plugins imports neither ase nor torch.
"""

from __future__ import annotations

from symplug import Domain, Output, SummaryStage, lazy

# representation and reporting unit of every output an atoms model may give
REPS = {"energy": "0e", "energies": "0e", "forces": "1o", "stress": "cartesian2",
        "dipole": "1o"}
UNITS = {"energy": "meV/atom", "energies": "meV", "forces": "meV/A", "stress": "GPa",
         "dipole": "e A"}


def atoms_domain() -> Domain:
    """The ``atoms`` domain: ase.Atoms under O(3) about the centre of mass."""
    here = "symplug_atoms.domain"
    return Domain(
        name="atoms", act=lazy("symplug_atoms.action:rotated_copies"), groups=("O3", "SO3"),
        outputs={name: Output(REPS[name], UNITS[name]) for name in REPS},
        description="ase.Atoms; O(3) about the centre of mass, cells rotate with the atoms",
        reference=lazy(f"{here}:reference_labels"),
        select_outputs=lazy(f"{here}:default_outputs"),
        summary=(SummaryStage(lazy(f"{here}:structure_rows"), lazy(f"{here}:all_structure_rows")),),
        check=lazy(f"{here}:check_structure"), excluded_outputs=lazy(f"{here}:excluded_outputs"),
        item_name="structures",  # one ase.Atoms per sample
        load_model=lazy("symplug_atoms.models:load_model"),
        load_data=lazy(f"{here}:read_frames", check=False),  # checked where used (flagged)
        load_partitions=lazy(f"{here}:frame_partitions"),
        training_task=lazy("symplug_atoms.finetune:training_task"),
        report_sections=lazy("symplug_atoms.report:report_sections"))
