"""The memory budget: sizes, chunks measured against the budget, requests refused up front."""

import numpy as np
import pytest
import torch

import symplug
from symplug import memory
from symplug.memory import MemoryBudgetError

MIB = 2 ** 20


@pytest.mark.parametrize("text,expected", [
    ("8G", 8 * 2 ** 30), ("8GiB", 8 * 2 ** 30), ("512M", 512 * MIB), ("1.5g", int(1.5 * 2 ** 30)),
    ("100000000", 100_000_000), (2 ** 30, 2 ** 30),
])
def test_sizes(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "8X", "", "1k", "nanG"])
def test_bad_sizes_are_one_line_errors(text):
    with pytest.raises(symplug.SymplugError, match="memory size"):
        memory.parse_size(text)


def test_limit_nests_and_restores():
    outer = memory.budget()
    with memory.limit("1G") as value:
        assert value == memory.budget() == 2 ** 30
        with memory.limit(None):
            assert memory.budget() == 2 ** 30
    assert memory.budget() == outer


def _work(units: int, per_unit: int) -> None:
    """Touch ``per_unit`` bytes per unit at once, as a model call on a chunk would."""
    block = np.ones(units * per_unit // 8)
    block += 1.0


@pytest.mark.skipif(memory.rss() is None, reason="the kernel reports no RSS here")
def test_a_call_that_reuses_freed_heap_is_measured():
    """300 MiB of freed heap below a live block stay resident (glibc trims only the top
    of its heap) and serve a 40 MiB request before any new memory is mapped: without
    giving free heap back before the trial, its RSS would not grow (measured: 0.06 MiB)."""
    blocks = [b"x" * (100 * 1024) for _ in range(3000)]
    pin = b"y" * (100 * 1024)
    del blocks
    _, grown = memory.measure(lambda: _work(1, 40 * MIB))
    assert 40 * MIB <= grown < 48 * MIB
    assert pin


@pytest.mark.skipif(memory.rss() is None, reason="the kernel reports no RSS here")
def test_chunks_keep_the_peak_under_the_budget():
    per_unit = 40 * MIB
    with memory.limit(memory.rss() + 400 * MIB) as budget:
        sizes = []
        for index in memory.chunks(60, cap=64, what="copies"):
            sizes.append(index.stop - index.start)
            _work(sizes[-1], per_unit)
            assert memory._status("VmHWM") <= budget
    assert sum(sizes) == 60 and sizes[0] == 1
    assert max(sizes) <= 10  # 400 MiB of room / 40 MiB per unit
    assert max(sizes) >= 4  # and the room is used


@pytest.mark.skipif(memory.rss() is None, reason="the kernel reports no RSS here")
def test_one_unit_over_the_budget_is_refused_with_its_measured_size():
    with memory.limit(memory.rss() + 100 * MIB):
        with pytest.raises(MemoryBudgetError, match=r"the smallest call \(1 of the copies of this sample\) took 2\d\d MiB"):
            for index in memory.chunks(5, cap=4):
                _work(index.stop - index.start, 250 * MIB)


def test_a_grid_too_large_is_refused_before_it_is_built():
    with pytest.raises(MemoryBudgetError, match=r"gauss-legendre grid of SO3 at degree 1000 "
                       r"\(4008005001 elements\) would need about"):
        symplug.quadrature("SO3", 1000, kind="gauss-legendre")


def test_spectral_tables_too_large_are_refused_before_any_model_call():
    calls = []

    def model(batch):
        calls.append(batch)
        return {"output": batch.sum(dim=-1)}

    domain = symplug.Domain(name="points", act=lambda x, g: x @ g.transpose(-1, -2),
                            groups=("SO2",), outputs={"output": symplug.Output("0e", "")})
    with pytest.raises(MemoryBudgetError, match=r"spectral tables of the equispaced grid "
                       r"\(200001 elements x 200001 basis functions of band 100000\)"):
        symplug.diagnose(model, [torch.randn(5, 3)], domain, degree=100_000, progress=False)
    assert calls == []


def test_diagnose_takes_a_budget_and_gives_the_same_numbers(tmp_path):
    from helpers import DistanceModel, load_example

    example = load_example("e3nn_equivariance")
    clouds = [torch.randn(6, 3, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    kwargs = dict(degree=2, outputs=["energy"], progress=False)
    small = symplug.diagnose(DistanceModel(), clouds, example.point_domain(), chunk_size=3,
                             max_memory="2G", **kwargs)
    large = symplug.diagnose(DistanceModel(), clouds, example.point_domain(), chunk_size=64,
                             **kwargs)
    a, b = small["outputs"]["energy"], large["outputs"]["energy"]
    assert a["equivariance_rmse"] == pytest.approx(b["equivariance_rmse"], rel=1e-12, abs=1e-15)
    with pytest.raises(MemoryBudgetError, match=r"of the memory budget \(64 MiB; --max-memory\) "
                       r"is left"):
        symplug.diagnose(DistanceModel(), clouds, example.point_domain(), max_memory="64M",
                         **kwargs)


@pytest.mark.skipif(memory.rss() is None, reason="the kernel reports no RSS here")
def test_a_symmetrised_tagger_takes_as_many_copies_per_call_as_the_budget_allows():
    """SymmetrizedTagger's copies go through the tagger in chunks sized by the budget
    (each copy of the jets here costs the tagger 48 MiB), with the same average."""
    from symplug_jets.symmetrize import SymmetrizedTagger

    calls = []

    def tagger(p4, mask):  # not invariant: the mean of px^2 over the particles
        calls.append(p4.shape[0] // 3)
        _work(calls[-1], 48 * MIB)
        return (p4[..., 1] ** 2 * mask).sum(-1) / mask.sum(-1)

    gen = torch.Generator().manual_seed(0)
    p4 = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64).abs() * 10
    mask = torch.ones(3, 5, dtype=torch.bool)
    free = SymmetrizedTagger(tagger, degree=24, chunk_size=64)(p4, mask)
    assert calls == [1, 4, 16, 4]  # measured first, then growing 4x a call up to the cap
    calls.clear()
    with memory.limit(memory.rss() + 400 * MIB):
        budgeted = SymmetrizedTagger(tagger, degree=24, chunk_size=64)(p4, mask)
    assert sum(calls) == 25 and calls[0] == 1 and 2 <= max(calls) < 16, calls  # 340 MiB: 7
    torch.testing.assert_close(budgeted, free, rtol=1e-12, atol=0)
