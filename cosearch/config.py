"""Run configuration: one frozen dataclass per concern, composed into `RunConfig`.

Owns the named presets (`tiny`, `cpu`, `paper`) and the `section.field=value` override
syntax shared by every CLI. It must not do work: entry points resolve a config here and
hand it to a library `run(config, workdir)`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, replace

from cosearch.registry import lookup
from cosearch.space import SearchSpace, get_space


@dataclass(frozen=True)
class DataConfig:
    data_dir: str = ""  # empty: $COSEARCH_DATA
    batch_size: int = 16
    eval_batch_size: int = 16


@dataclass(frozen=True)
class ModelConfig:
    space: str = "cpu"  # search-space preset (cosearch.space.PRESETS)
    dropout: float = 0.0  # the cpu budget is ~2 epochs: too short to overfit (experiments/recipe)
    # Output layer: "adaptive" (adaptive softmax, exact word-level probabilities) or "full".
    output: str = "adaptive"
    cutoffs: tuple[int, ...] = (2000, 10000)  # head shortlist, then tail cluster bounds
    tail_div: int = 4  # tail cluster i projects to d_max / tail_div**(i+1) dims
    # Output tables tied to the input ones (the first recipe) or separate and zero-initialised;
    # output biases start at zero or at the train split's log-unigram (experiments/recipe)
    tied: bool = False
    output_bias: str = "unigram"  # unigram | zero
    # Matmul inputs in this dtype (float32 accumulation and results); parameters, LayerNorm,
    # softmax, logits and loss stay float32. bfloat16 on `paper` (GPU); float32 elsewhere.
    compute_dtype: str = "float32"  # float32 | bfloat16


@dataclass(frozen=True)
class TrainConfig:
    # cpu default: 2,000 sandwich steps x 2048 tokens = 4.1M tokens (~2 epochs), about 2 h
    # on 2 cores (experiments/supernet_cpu); from scratch about 30 min
    steps: int = 2000
    lr: float = 3e-3
    warmup_steps: int = 100
    # wsd: warmup, constant, then linear decay over the last decay_frac of the steps, so a
    # finished run can be extended (--resume --steps N redoes the decay at the new end);
    # cosine: warmup then cosine to min_lr_ratio at the last step (the first recipe)
    schedule: str = "wsd"
    decay_frac: float = 0.2
    min_lr_ratio: float = 0.1
    b2: float = 0.95
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    n_random: int = 2  # sandwich: largest + smallest + n_random random subnets
    distill: bool = True  # in-place distillation from the largest subnet
    # student loss = alpha * KL(teacher || student) + (1 - alpha) * CE(labels), as OFA mixes
    # them; pure KD (alpha=1, BigNAS) kept the cpu supernet on a unigram plateau (README)
    distill_alpha: float = 0.5
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    ckpt_every: int = 50
    eval_tokens: int = 20_000  # valid tokens for periodic evaluation (0 = whole split)


@dataclass(frozen=True)
class SearchConfig:
    population: int = 40
    generations: int = 40
    mutation_prob: float = 0.2  # per gene
    crossover_prob: float = 0.9
    seed: int = 0
    # validation tokens per perplexity during search (0 = all); 4,096 keeps a cpu 40x40
    # search near 10 minutes on 2 cores (~0.3 s per 2,048 tokens per arch, measured)
    eval_tokens: int = 4096


@dataclass(frozen=True)
class RunConfig:
    name: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    @property
    def space(self) -> SearchSpace:
        return get_space(self.model.space)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config saved in a run directory; fields it predates take the values of the
        recipe it was made with (`LEGACY_DEFAULTS`), not today's defaults."""
        sections = {f.name: f.type for f in dataclasses.fields(cls) if f.name != "name"}
        hints = typing.get_type_hints(cls)
        kwargs = {"name": d["name"]}
        for key in sections:
            if key in d:
                sub = hints[key]
                fields = {**LEGACY_DEFAULTS.get(key, {}), **d[key]}
                kwargs[key] = sub(**{k: _coerce(sub, k, v) for k, v in fields.items()})
        return cls(**kwargs)


# What a saved config that lacks a field meant: the first recipe (tied output, zero output
# biases, cosine schedule), so checkpoints written before these fields existed still load.
LEGACY_DEFAULTS: dict[str, dict] = {
    "model": {"tied": True, "output_bias": "zero", "compute_dtype": "float32"},
    "train": {"schedule": "cosine", "b2": 0.999, "decay_frac": 0.2},
}


PRESETS: dict[str, RunConfig] = {
    "tiny": RunConfig(
        name="tiny",
        data=DataConfig(batch_size=4, eval_batch_size=4),
        model=ModelConfig(space="tiny", dropout=0.1, cutoffs=(16, 40), tail_div=2),
        train=TrainConfig(
            steps=6, lr=3e-3, warmup_steps=2, log_every=2, eval_every=3, ckpt_every=3, eval_tokens=0
        ),
        search=SearchConfig(population=8, generations=3, eval_tokens=0),
    ),
    "cpu": RunConfig(name="cpu"),
    "paper": RunConfig(
        name="paper",
        data=DataConfig(batch_size=32, eval_batch_size=32),
        model=ModelConfig(space="paper", dropout=0.1, output="full", compute_dtype="bfloat16"),
        train=TrainConfig(
            steps=40_000,
            lr=1e-3,
            warmup_steps=2000,
            eval_every=2000,
            ckpt_every=1000,
            eval_tokens=50_000,
        ),
        search=SearchConfig(eval_tokens=50_000),
    ),
}


def get_preset(name: str) -> RunConfig:
    return lookup(PRESETS, name, "preset")


def _coerce(section_type, key: str, value):
    """Convert a CLI string (or JSON value) to the declared type of `section_type.key`."""
    hints = typing.get_type_hints(section_type)
    if key not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(section_type))
        raise KeyError(f"{section_type.__name__} has no field '{key}'; fields: {known}")
    typ = hints[key]
    if not isinstance(value, str):
        return tuple(value) if typing.get_origin(typ) is tuple else value
    if typ is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}={value!r}: expected true/false")
    if typing.get_origin(typ) is tuple:
        return tuple(int(v) for v in value.split(",") if v)
    try:
        return typ(value)
    except ValueError:
        raise ValueError(f"{key}={value!r}: expected {typ.__name__}") from None


def override(cfg: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply `section.field=value` strings, e.g. `train.lr=3e-4`, `model.cutoffs=2000,10000`."""
    hints = typing.get_type_hints(RunConfig)
    for a in assignments:
        if "=" not in a or "." not in a.split("=", 1)[0]:
            raise ValueError(f"override '{a}' is not of the form section.field=value")
        path, value = a.split("=", 1)
        section, key = path.split(".", 1)
        if section not in hints or section == "name":
            known = ", ".join(k for k in hints if k != "name")
            raise KeyError(f"override '{a}': no section '{section}'; sections: {known}")
        sub = getattr(cfg, section)
        cfg = replace(cfg, **{section: replace(sub, **{key: _coerce(type(sub), key, value)})})
    get_space(cfg.model.space)  # fail early on an unknown space
    check(cfg)
    return cfg


# field -> allowed values, and fields that must be positive (checked by `check`)
CHOICES = {
    ("model", "output"): ("adaptive", "full"),
    ("model", "output_bias"): ("unigram", "zero"),
    ("model", "compute_dtype"): ("float32", "bfloat16"),
    ("train", "schedule"): ("wsd", "cosine"),
}
POSITIVE = (
    ("data", "batch_size"), ("data", "eval_batch_size"), ("train", "steps"), ("train", "lr"),
    ("train", "log_every"), ("train", "eval_every"), ("train", "ckpt_every"),
    ("search", "population"), ("search", "generations"),
)  # fmt: skip


def check(cfg: RunConfig) -> RunConfig:
    """Refuse values no run can use, naming the field and the override that fixes it."""
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ValueError(
                f"{section}.{key}={value!r}: expected one of {', '.join(allowed)} "
                f"(--set {section}.{key}={allowed[0]})"
            )
    for section, key in POSITIVE:
        value = getattr(getattr(cfg, section), key)
        if not value > 0:
            raise ValueError(f"{section}.{key}={value!r}: must be positive")
    for section, key in (("model", "dropout"), ("train", "decay_frac")):
        value = getattr(getattr(cfg, section), key)
        if not 0 <= value < 1 + (key == "decay_frac"):
            raise ValueError(f"{section}.{key}={value!r}: must lie in [0, 1]")
    return cfg


def differences(saved, now, prefix: str = "") -> str:
    """The fields where two JSON-like dicts differ, as 'a.b: saved X, now Y; ...'."""
    if isinstance(saved, dict) and isinstance(now, dict):
        parts = [
            differences(saved.get(k), now.get(k), f"{prefix}{k}.")
            for k in sorted(set(saved) | set(now))
            if saved.get(k) != now.get(k)
        ]
        return "; ".join(parts)
    return f"{prefix.rstrip('.')}: saved {json.dumps(saved)}, now {json.dumps(now)}"
