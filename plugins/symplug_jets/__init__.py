"""symplug adapter for jet tagging: ROOT data through uproot/awkward, group actions
on constituent 4-momenta, taggers as callables ``f(p4, mask) -> scores``.

Public API (imported lazily, so that ``symplug plugins`` works without the ``jets``
extra)::

    from symplug_jets import read_root, write_root, write_predictions, diagnose, boost_scan
    from symplug_jets import rejection  # 1/eps_B with its resolution on the test jets

Conventions: 4-momenta (E, px, py, pz) in GeV, float64; the beam is the z axis.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "JetSet": "rootio", "read_root": "rootio", "write_root": "rootio", "write_jets": "rootio",
    "write_predictions": "rootio", "read_top_tagging_h5": "rootio",
    "rotate_jets": "action", "boost": "action", "jet_frames": "action",
    "auc": "metrics", "background_rejection": "metrics", "rejection": "metrics",
    "format_rejection": "metrics",
    "diagnose": "domain", "boost_scan": "domain", "jets_domain": "record",
    "lie_derivatives": "domain",
    "load_tagger": "taggers", "load_reference": "taggers", "CallableTagger": "callable_tagger",
    "PointNetTagger": "pointnet", "concatenate": "rootio",
    "SymmetrizedTagger": "symmetrize",
    "WeaverTagger": "weaver", "ParticleTransformerWrapper": "weaver", "kin_features": "weaver",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'symplug_jets' has no attribute {name!r}")
