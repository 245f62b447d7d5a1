"""Jets generated locally with Pythia 8 (pythia8mc) and FastJet: no downloads.

Signal: hadronic top jets from pp -> ttbar (W -> q q' only), background: QCD jets from
hard 2 -> 2 QCD, at sqrt(s) = 14 TeV (multi-parton interactions off, for speed).
Visible final-state particles (no neutrinos) are clustered with anti-kT, R = 0.8; a jet
is kept if pT_min <= pT < pT_max and |eta| < 2, and a top jet only if the top and its
three decay quarks lie within dR < 0.8 of the jet axis. Everything is seeded. The
jets are written in the JetClass layout (:func:`symplug_jets.rootio.write_root`) with
``label_Top``/``label_QCD`` and ``jet_pt``, ``jet_eta``, ``jet_phi``, ``jet_energy``,
``jet_mass`` observers.

stdout stays clean: FastJet's C++ start-up banner (14 lines on std::cout at the first
clustering) is switched off through its own ``set_fastjet_banner_stream`` (a null
stream), and one line on stderr credits FastJet instead.
"""

from __future__ import annotations

from pathlib import Path

import sys

import numpy as np
import vector
from tqdm.auto import tqdm

from symplug import SymplugError

from .rootio import write_root

R = 0.8
MAX_SEED = 899_999_999  # Pythia's Random:seed is at most 900 000 000; QCD uses seed + 1
PT_RANGE = (100.0, 7000.0)  # GeV: the pT-hat window opens 100 GeV below pt_min; sqrt(s)/2
NEUTRINOS = (12, 14, 16)
FASTJET_CREDIT = ("FastJet (M. Cacciari, G.P. Salam, G. Soyez): please cite EPJC72(2012)1896 "
                  "[arXiv:1111.6097]")
_credited = False


def quiet_fastjet(credit: bool = True) -> None:
    """Keep FastJet's banner off stdout: point its banner stream at nothing (before the
    first clustering; the banner is printed once per process) and, with ``credit``, say
    once on stderr, in one line, what it asks users to cite."""
    global _credited
    import fastjet._swig

    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    if credit and not _credited:
        print(FASTJET_CREDIT, file=sys.stderr)
        _credited = True


def check_options(n: int, seed: int, pt_min: float, pt_max: float,
                  out: str | Path | None = None) -> None:
    """Refuse, in one line naming the option, what Pythia cannot generate: ``n`` >= 1 jets
    per class, 0 <= ``seed`` <= :data:`MAX_SEED`, ``PT_RANGE[0]`` <= ``pt_min`` <
    ``pt_max`` <= ``PT_RANGE[1]`` GeV; ``out`` a file that can be written
    (:func:`symplug.result.check_writable`), all before the minutes of generation."""
    if int(n) < 1:
        raise SymplugError(f"--n must be >= 1 (jets per class), got {n}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise SymplugError(f"--seed must be in [0, {MAX_SEED}] (Pythia's seed range), got {seed}")
    lo, hi = PT_RANGE
    if not (np.isfinite(pt_min) and lo <= pt_min <= hi):
        raise SymplugError(f"--pt-min must be in [{lo:g}, {hi:g}] GeV, got {pt_min}")
    if not (np.isfinite(pt_max) and pt_min < pt_max <= hi):
        raise SymplugError(f"--pt-max must be in (--pt-min = {pt_min:g}, {hi:g}] GeV, got {pt_max}")
    if out is not None:
        from symplug.result import check_writable

        check_writable(out, "--out")


def _pythia(process: str, seed: int, pt_min: float, pt_max: float):
    import pythia8mc

    p = pythia8mc.Pythia("", False)
    settings = ["Beams:eCM = 14000.", "PartonLevel:MPI = off", "Next:numberCount = 0",
                "Next:numberShowEvent = 0", "Next:numberShowInfo = 0",
                "Next:numberShowProcess = 0", "Init:showChangedSettings = off",
                "Init:showProcesses = off", "Init:showChangedParticleData = off",
                "Random:setSeed = on", f"Random:seed = {seed}",
                f"PhaseSpace:pTHatMin = {pt_min - 100}", f"PhaseSpace:pTHatMax = {pt_max + 100}"]
    if process == "top":
        settings += ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on",
                     "24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
    else:
        settings += ["HardQCD:all = on"]
    for s in settings:
        if not p.readString(s):
            raise SymplugError(f"Pythia rejected the setting {s!r}")
    if not p.init():
        raise SymplugError("Pythia failed to initialise")
    return p


def _top_partons(event) -> list[list[vector.VectorObject3D]]:
    """The 3-momenta of each top and its b, q, q' (last copies), per hadronic top."""
    tops = []
    for i in range(event.size()):
        prt = event[i]
        if prt.idAbs() != 6 or event[prt.iBotCopyId()].index() != i:
            continue
        partons = [i]
        for d in prt.daughterList():
            dp = event[event[d].iBotCopyId()]
            if dp.idAbs() == 5:
                partons.append(dp.index())
            elif dp.idAbs() == 24:
                partons += [event[w].index() for w in dp.daughterList() if event[w].idAbs() <= 5]
        if len(partons) == 4:
            tops.append([vector.obj(px=event[k].px(), py=event[k].py(), pz=event[k].pz())
                         for k in partons])
    return tops


def generate(n_jets: int, process: str, seed: int = 0, pt_min: float = 550.0,
             pt_max: float = 650.0, max_events: int | None = None,
             progress: bool = True) -> list[np.ndarray]:
    """``n_jets`` jets of ``process`` (``"top"`` or ``"qcd"``): constituents (n, 4) as
    (E, px, py, pz) in GeV, plus per-jet observers in ``generate.last_observers``."""
    import fastjet

    if process not in ("top", "qcd"):
        raise SymplugError(f"process must be 'top' or 'qcd', got {process!r}")
    check_options(n_jets, seed, pt_min, pt_max)
    quiet_fastjet(credit=progress)
    pythia = _pythia(process, seed, pt_min, pt_max)
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, R)
    jets, observers = [], []
    max_events = max_events or 200 * n_jets
    bar = tqdm(total=n_jets, desc=f"{process} jets", unit="jet", disable=not progress)
    events = 0
    while len(jets) < n_jets and events < max_events:
        events += 1
        if not pythia.next():
            continue
        event = pythia.event
        particles = [fastjet.PseudoJet(p.px(), p.py(), p.pz(), p.e())
                     for p in (event[i] for i in range(event.size()))
                     if p.isFinal() and p.idAbs() not in NEUTRINOS]
        for k, pj in enumerate(particles):
            pj.set_user_index(k)
        sequence = fastjet.ClusterSequence(particles, jet_def)
        tops = _top_partons(event) if process == "top" else []
        for jet in sorted(sequence.inclusive_jets(pt_min), key=lambda j: -j.pt())[:2]:
            if not (pt_min <= jet.pt() < pt_max and abs(jet.eta()) < 2.0):
                continue
            axis = vector.obj(pt=jet.pt(), eta=jet.eta(), phi=jet.phi_std())
            if process == "top" and not any(all(parton.deltaR(axis) < R for parton in top)
                                            for top in tops):
                continue
            cons = np.array([[c.e(), c.px(), c.py(), c.pz()] for c in jet.constituents()])
            jets.append(cons)
            observers.append([jet.pt(), jet.eta(), jet.phi_std(), jet.e(), jet.m()])
            bar.update(1)
            if len(jets) == n_jets:
                break
    bar.close()
    if len(jets) < n_jets:
        raise SymplugError(f"only {len(jets)} {process} jets in {events} events; raise max_events")
    generate.last_observers = np.array(observers)
    return jets


def generate_file(path: str | Path, n_per_class: int, seed: int = 0, pt_min: float = 550.0,
                  pt_max: float = 650.0, progress: bool = True) -> Path:
    """Top and QCD jets (``n_per_class`` each, shuffled with ``seed``) in one ROOT file."""
    check_options(n_per_class, seed, pt_min, pt_max, path)
    top = generate(n_per_class, "top", seed, pt_min, pt_max, progress=progress)
    top_obs = generate.last_observers
    qcd = generate(n_per_class, "qcd", seed + 1, pt_min, pt_max, progress=progress)
    qcd_obs = generate.last_observers
    order = np.random.default_rng(seed).permutation(2 * n_per_class)
    constituents = [(top + qcd)[i] for i in order]
    is_top = (order < n_per_class).astype(np.int32)
    obs = np.concatenate([top_obs, qcd_obs])[order]
    names = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_mass")
    return write_root(path, constituents, {"label_Top": is_top, "label_QCD": 1 - is_top},
                      {n: obs[:, k] for k, n in enumerate(names)})
