"""The one definition of the Transformer search space.

Owns `SearchSpace` (which choices exist), `Arch` (one sub-architecture), the named
presets, sampling, the integer genome codec and analytic parameter/MAC counts. Every other
part (supernet masks, workload extraction, LUT shapes, the evolutionary search) derives
from here; nothing else may hard-code a choice list.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cosearch.registry import lookup


class ArchError(ValueError):
    """An architecture does not belong to a search space (names the field and the fix)."""


@dataclass(frozen=True)
class Arch:
    """One sub-architecture: global depth and width, per-layer heads and FFN width."""

    n_layers: int
    d_model: int
    heads: tuple[int, ...]
    d_ffn: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        object.__setattr__(self, "d_ffn", tuple(int(f) for f in self.d_ffn))
        if len(self.heads) != self.n_layers or len(self.d_ffn) != self.n_layers:
            raise ArchError(
                f"Arch has n_layers={self.n_layers} but {len(self.heads)} head counts and "
                f"{len(self.d_ffn)} d_ffn values; give exactly one of each per layer."
            )

    def to_dict(self) -> dict:
        return {
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "heads": list(self.heads),
            "d_ffn": list(self.d_ffn),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        missing = {"n_layers", "d_model", "heads", "d_ffn"} - set(d)
        if missing:
            raise ArchError(f"arch JSON lacks field(s) {sorted(missing)}; got keys {sorted(d)}")
        return cls(int(d["n_layers"]), int(d["d_model"]), tuple(d["heads"]), tuple(d["d_ffn"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str) -> Arch:
        return cls.from_dict(json.loads(s))

    def short(self) -> str:
        """Compact human-readable id, e.g. `L3-d256-h4.2.4-f512.256.1024`."""
        h = ".".join(map(str, self.heads))
        f = ".".join(map(str, self.d_ffn))
        return f"L{self.n_layers}-d{self.d_model}-h{h}-f{f}"

    @classmethod
    def from_short(cls, text: str) -> Arch:
        """The arch of a `short()` id (as the reports print them)."""
        m = _SHORT.fullmatch(text.strip())
        if m is None:
            raise ArchError(
                f"'{text}' is not an arch id like L3-d256-h4.2.4-f512.256.1024 (layers, "
                "d_model, heads per layer, FFN width per layer)"
            )
        heads = tuple(int(x) for x in m["h"].split("."))
        return cls(int(m["L"]), int(m["d"]), heads, tuple(int(x) for x in m["f"].split(".")))


_SHORT = re.compile(r"L(?P<L>\d+)-d(?P<d>\d+)-h(?P<h>\d+(?:\.\d+)*)-f(?P<f>\d+(?:\.\d+)*)")


def _steps(lo: int, hi: int, step: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1, step))


@dataclass(frozen=True)
class SearchSpace:
    """Choices for every architectural dimension; heads and d_ffn are chosen per layer."""

    name: str
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    d_model: tuple[int, ...]
    d_ffn: tuple[int, ...]
    head_dim: int = 64
    seq_len: int = 128
    vocab: int = 33278

    # ----- extremes ---------------------------------------------------------------------
    @property
    def max_layers(self) -> int:
        return max(self.layers)

    @property
    def max_heads(self) -> int:
        return max(self.heads)

    def largest(self) -> Arch:
        n = max(self.layers)
        return Arch(n, max(self.d_model), (max(self.heads),) * n, (max(self.d_ffn),) * n)

    def smallest(self) -> Arch:
        n = min(self.layers)
        return Arch(n, min(self.d_model), (min(self.heads),) * n, (min(self.d_ffn),) * n)

    # ----- size and sampling ------------------------------------------------------------
    def size(self) -> int:
        """Number of distinct architectures (per-layer choices multiply)."""
        per_layer = len(self.heads) * len(self.d_ffn)
        return len(self.d_model) * sum(per_layer**n for n in self.layers)

    def sample(self, rng: random.Random) -> Arch:
        """Uniform over (n_layers, d_model) and each layer's (heads, d_ffn) independently."""
        n = rng.choice(self.layers)
        return Arch(
            n,
            rng.choice(self.d_model),
            tuple(rng.choice(self.heads) for _ in range(n)),
            tuple(rng.choice(self.d_ffn) for _ in range(n)),
        )

    # ----- validation -------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Return `arch` if it is in this space, else raise ArchError naming the field."""

        def bad(field: str, value, allowed) -> ArchError:
            return ArchError(
                f"arch {arch.short()} is outside search space '{self.name}': "
                f"{field}={value} is not one of {list(allowed)}"
            )

        if arch.n_layers not in self.layers:
            raise bad("n_layers", arch.n_layers, self.layers)
        if arch.d_model not in self.d_model:
            raise bad("d_model", arch.d_model, self.d_model)
        for i, h in enumerate(arch.heads):
            if h not in self.heads:
                raise bad(f"heads[{i}]", h, self.heads)
        for i, f in enumerate(arch.d_ffn):
            if f not in self.d_ffn:
                raise bad(f"d_ffn[{i}]", f, self.d_ffn)
        return arch

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    # ----- genome codec -----------------------------------------------------------------
    @property
    def gene_cardinalities(self) -> tuple[int, ...]:
        """Number of values of each gene: [layers, d_model, (heads, d_ffn) x max_layers]."""
        per_layer = (len(self.heads), len(self.d_ffn)) * self.max_layers
        return (len(self.layers), len(self.d_model), *per_layer)

    def encode(self, arch: Arch) -> list[int]:
        """Arch -> list of choice indices. Genes of absent layers are 0."""
        self.validate(arch)
        g = [self.layers.index(arch.n_layers), self.d_model.index(arch.d_model)]
        for i in range(self.max_layers):
            if i < arch.n_layers:
                g += [self.heads.index(arch.heads[i]), self.d_ffn.index(arch.d_ffn[i])]
            else:
                g += [0, 0]
        return g

    def decode(self, genome: Sequence[int]) -> Arch:
        """Choice indices -> Arch. Genes of layers beyond n_layers are ignored."""
        card = self.gene_cardinalities
        if len(genome) != len(card):
            raise ArchError(
                f"genome has {len(genome)} genes; space '{self.name}' needs {len(card)}"
            )
        for i, (g, c) in enumerate(zip(genome, card)):
            if not 0 <= int(g) < c:
                raise ArchError(f"gene {i}={g} out of range [0, {c}) for space '{self.name}'")
        n = self.layers[int(genome[0])]
        heads = tuple(self.heads[int(genome[2 + 2 * i])] for i in range(n))
        ffn = tuple(self.d_ffn[int(genome[3 + 2 * i])] for i in range(n))
        return Arch(n, self.d_model[int(genome[1])], heads, ffn)

    # ----- analytic counts --------------------------------------------------------------
    def param_count(self, arch: Arch, *, embeddings: bool = True) -> int:
        """Parameters of the standalone subnet: the Transformer blocks and the final
        LayerNorm, plus (if asked) a dense vocab x d token embedding tied with the LM head,
        the hardware workload's view. Positions are sinusoidal (no parameters). The model's
        own (adaptive) embedding is counted by cosearch.supernet.model.embedding_param_count."""
        d, hd = arch.d_model, self.head_dim
        total = 2 * d  # final LayerNorm
        if embeddings:
            total += self.vocab * d
        for h, f in zip(arch.heads, arch.d_ffn):
            a = hd * h
            total += 2 * d  # LN1
            total += 3 * (d * a + a)  # Q, K, V
            total += a * d + d  # output projection
            total += 2 * d  # LN2
            total += d * f + f + f * d + d  # FFN
        return total

    def macs(self, arch: Arch, seq_len: int | None = None, *, lm_head: bool = True) -> int:
        """Multiply-accumulates of one prefill over `seq_len` tokens (batch 1): every GEMM
        of DESIGN.md's workload contract, LM head (L, d, vocab) included if asked."""
        L = self.seq_len if seq_len is None else seq_len
        d, hd = arch.d_model, self.head_dim
        total = 0
        for h, f in zip(arch.heads, arch.d_ffn):
            a = hd * h
            total += 3 * L * d * a  # Q, K, V
            total += 2 * h * L * hd * L  # scores and context
            total += L * a * d  # output projection
            total += 2 * L * d * f  # FFN
        if lm_head:
            total += L * d * self.vocab
        return total

    def flops(self, arch: Arch, seq_len: int | None = None, *, lm_head: bool = True) -> int:
        return 2 * self.macs(arch, seq_len, lm_head=lm_head)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, SearchSpace] = {
    # Wattanawong & Keutzer (UCB/EECS-2023-92), ch. 3: exactly the thesis space.
    "paper": SearchSpace(
        name="paper",
        layers=(3, 4, 5, 6),
        heads=(4, 6, 8, 10, 12),
        d_model=_steps(384, 768, 96),
        d_ffn=_steps(768, 3072, 128),
        head_dim=64,
        seq_len=512,
    ),
    # Same structure scaled to train in about an hour on 2 CPU cores (README explains).
    "cpu": SearchSpace(
        name="cpu",
        layers=(2, 3, 4),
        heads=(1, 2, 3, 4),
        d_model=_steps(128, 256, 32),
        d_ffn=_steps(256, 1024, 128),
        head_dim=64,
        seq_len=128,
    ),
    # For tests: seconds to build and train, small vocabulary of the tiny corpus.
    "tiny": SearchSpace(
        name="tiny",
        layers=(1, 2),
        heads=(1, 2),
        d_model=(16, 32),
        d_ffn=(32, 48, 64),
        head_dim=8,
        seq_len=16,
        vocab=47,  # the made-up corpus under tests/data
    ),
}


def get_space(name: str) -> SearchSpace:
    """The search space of a preset; an unknown name lists the known ones."""
    return lookup(PRESETS, name, "search-space preset")


def arch_from_arg(space: SearchSpace, spec: str) -> Arch:
    """Parse 'largest', 'smallest', an arch id as the reports print it
    (`L3-d256-h4.2.4-f512.256.1024`), an inline JSON object or a path to a JSON file."""
    if spec == "largest":
        return space.largest()
    if spec == "smallest":
        return space.smallest()
    if _SHORT.fullmatch(spec.strip()):
        return space.validate(Arch.from_short(spec))
    text = spec
    if not spec.lstrip().startswith("{"):
        try:
            with open(spec) as f:
                text = f.read()
        except OSError as e:
            raise ArchError(
                f"arch '{spec}' is neither 'largest', 'smallest', a JSON object nor a "
                f"readable JSON file ({e.strerror})"
            ) from None
    return space.validate(Arch.from_json(text))
