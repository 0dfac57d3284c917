import json
import random

import pytest

from cosearch.registry import UnknownNameError
from cosearch.space import PRESETS, Arch, ArchError, arch_from_arg, get_space


def test_paper_space_is_the_thesis_space():
    s = PRESETS["paper"]
    assert s.layers == (3, 4, 5, 6)
    assert s.heads == (4, 6, 8, 10, 12)
    assert s.head_dim == 64
    assert s.d_model == (384, 480, 576, 672, 768)
    assert s.d_ffn[0] == 768 and s.d_ffn[-1] == 3072 and len(s.d_ffn) == 19
    assert s.vocab == 33278
    per_layer = 5 * 19
    assert s.size() == 5 * sum(per_layer**n for n in (3, 4, 5, 6)) == 3_714_560_040_000


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_codec_round_trips_thousands_of_random_archs(name):
    space = PRESETS[name]
    rng = random.Random(0)
    for _ in range(3000):
        arch = space.sample(rng)
        g = space.encode(arch)
        assert len(g) == len(space.gene_cardinalities)
        assert all(0 <= x < c for x, c in zip(g, space.gene_cardinalities))
        assert space.decode(g) == arch
        assert Arch.from_json(arch.to_json()) == arch
        assert hash(Arch.from_dict(arch.to_dict())) == hash(arch)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_decode_of_any_genome_is_in_the_space(name):
    space = PRESETS[name]
    rng = random.Random(1)
    for _ in range(500):
        g = [rng.randrange(c) for c in space.gene_cardinalities]
        assert space.contains(space.decode(g))


def test_sampling_covers_every_choice_on_tiny():
    space = PRESETS["tiny"]
    rng = random.Random(0)
    seen = {space.sample(rng) for _ in range(5000)}
    assert len(seen) == space.size()


def test_extremes():
    s = PRESETS["cpu"]
    big, small = s.largest(), s.smallest()
    assert big.n_layers == 4 and big.d_model == 256 and set(big.d_ffn) == {1024}
    assert small.n_layers == 2 and small.d_model == 128 and set(small.heads) == {1}
    assert s.param_count(big) > s.param_count(small)


def _direct_params(space, arch):
    """Count by listing every weight matrix and vector of the standalone model."""
    d, hd = arch.d_model, space.head_dim
    shapes = [(space.vocab, d), (d,), (d,)]  # tied embedding, final LN
    for h, f in zip(arch.heads, arch.d_ffn):
        a = h * hd
        shapes += [(d,), (d,), (d, a), (a,), (d, a), (a,), (d, a), (a,), (a, d), (d,)]
        shapes += [(d,), (d,), (d, f), (f,), (f, d), (d,)]
    total = 0
    for sh in shapes:
        n = 1
        for x in sh:
            n *= x
        total += n
    return total


def _direct_macs(space, arch, L):
    d, hd = arch.d_model, space.head_dim
    total = 0
    for h, f in zip(arch.heads, arch.d_ffn):
        for _ in range(3):
            total += L * d * (hd * h)
        for _ in range(h):
            total += L * hd * L + L * L * hd
        total += L * (hd * h) * d + L * d * f + L * f * d
    return total + L * d * space.vocab


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_counts_match_a_direct_count(name):
    space = PRESETS[name]
    rng = random.Random(3)
    for _ in range(50):
        a = space.sample(rng)
        assert space.param_count(a) == _direct_params(space, a)
        assert space.macs(a, 77) == _direct_macs(space, a, 77)
        assert space.flops(a) == 2 * space.macs(a)


def test_arch_outside_space_names_field_value_and_choices():
    s = PRESETS["paper"]
    bad = Arch(3, 400, (4, 4, 4), (768, 768, 768))
    with pytest.raises(ArchError, match=r"d_model=400 is not one of \[384, 480"):
        s.validate(bad)
    with pytest.raises(ArchError, match=r"heads\[1\]=5"):
        s.validate(Arch(3, 384, (4, 5, 4), (768, 768, 768)))
    with pytest.raises(ArchError, match="n_layers=7"):
        s.validate(Arch(7, 384, (4,) * 7, (768,) * 7))
    with pytest.raises(ArchError, match="one of each per layer"):
        Arch(3, 384, (4, 4), (768, 768, 768))
    with pytest.raises(ArchError, match="out of range"):
        s.decode([9] + [0] * (len(s.gene_cardinalities) - 1))


def test_unknown_space_lists_known():
    with pytest.raises(UnknownNameError, match="known: cpu, paper, tiny"):
        get_space("huge")


def test_arch_from_arg(tmp_path):
    s = PRESETS["tiny"]
    assert arch_from_arg(s, "largest") == s.largest()
    a = s.smallest()
    f = tmp_path / "a.json"
    f.write_text(json.dumps(a.to_dict()))
    assert arch_from_arg(s, str(f)) == a
    assert arch_from_arg(s, a.to_json()) == a
    with pytest.raises(ArchError, match="neither"):
        arch_from_arg(s, str(tmp_path / "missing.json"))


def test_arch_ids_as_the_reports_print_them_round_trip():
    import random

    s = PRESETS["cpu"]
    for i in range(300):
        a = s.sample(random.Random(i))
        assert Arch.from_short(a.short()) == a
        assert arch_from_arg(s, a.short()) == a  # what `cosearch.evaluate --archs` takes
    with pytest.raises(ArchError, match="outside search space"):
        arch_from_arg(s, "L4-d999-h4.4.4.4-f1024.640.1024.896")
    with pytest.raises(ArchError, match="not an arch id"):
        Arch.from_short("L4-d256")
    with pytest.raises(ArchError, match="one of each per layer"):
        Arch.from_short("L2-d128-h1-f256.256")
