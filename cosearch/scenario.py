"""Serving scenarios: what one costed unit of inference is (a prefill, a decode step, a chat).

Owns the `Scenario` config (a frozen dataclass with named presets, overridable as
`NAME:field=value,...`), its resolution against a search space (lengths the preset leaves
to the space), and its split into `Phase`s, the passes the workload extractor
(`cosearch.hw.workload.phase_ops`) and the coster (`cosearch.hw.lut.Coster`) cost. It must
not cost anything.

* ``prefill``: one forward pass over `seq_len` tokens of `batch` sequences; logits at every
  position (what `cosearch.evaluate` computes; today's costed unit, the default).
* ``decode``: one generation step of `batch` sequences with `context` keys in the KV cache
  (the new token's own K/V included): weight GEMMs with M = batch, per sequence and head a
  1 x context attention GEMV over the cache, the LM head for the new token.
* ``chat``: one request: a prefill of `prompt` tokens (logits at its last position only:
  the first response token), then `generate` decode steps, step i (0-based) attending over
  prompt + i + 1 keys (contexts prompt + 1 ... prompt + generate), costed step by step.

Objectives are per costed unit: a prefill of L tokens, a decode step (= per generated
token at batch 1, per `batch` tokens otherwise), a chat request (`unit`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from cosearch.errors import UserError
from cosearch.registry import lookup

KINDS = ("prefill", "decode", "chat")
LOGITS = ("all", "last")


@dataclass(frozen=True)
class Scenario:
    """What is costed. Lengths left at 0 take the search space's `seq_len` when resolved
    (`resolve`); `kv_bytes` is the width of one cached K or V value (int8 on Gemmini, as
    the cost model's DRAM words)."""

    name: str = "prefill"
    kind: str = "prefill"
    batch: int = 1
    seq_len: int = 0  # prefill: tokens per sequence (0 = the space's)
    context: int = 0  # decode: keys attended per step (0 = the space's seq_len)
    prompt: int = 0  # chat: prompt tokens (0 = half the space's seq_len)
    generate: int = 0  # chat: decode steps (0 = half the space's seq_len)
    logits: str = "all"  # prefill: LM head at every position ('all') or the last ('last')
    kv_bytes: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"scenario kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.logits not in LOGITS:
            raise UserError(
                f"scenario logits must be one of {', '.join(LOGITS)}, got {self.logits!r}"
            )
        if self.batch < 1 or self.kv_bytes < 1:
            raise UserError(
                f"scenario {self.name}: batch and kv_bytes must be >= 1, got batch="
                f"{self.batch}, kv_bytes={self.kv_bytes}"
            )
        for f in ("seq_len", "context", "prompt", "generate"):
            if getattr(self, f) < 0:
                raise UserError(
                    f"scenario {self.name}: {f} must be >= 0 (0 = from the search space), "
                    f"got {getattr(self, f)}"
                )

    @property
    def is_default(self) -> bool:
        """Today's costed unit (a batch-1 prefill with every logit): the LUT layout and
        the search outputs of earlier runs are unchanged for it."""
        return self.kind == "prefill" and self.batch == 1 and self.logits == "all"

    def resolve(self, space_seq_len: int) -> Scenario:
        """Lengths left at 0 filled in from the space's sequence length."""
        half = max(1, space_seq_len // 2)
        return replace(
            self,
            seq_len=self.seq_len or space_seq_len,
            context=self.context or space_seq_len,
            prompt=self.prompt or half,
            generate=self.generate or half,
        )

    def phases(self, space_seq_len: int) -> list[Phase]:
        """The passes of one costed unit, in order (see the module docstring)."""
        s = self.resolve(space_seq_len)
        b = s.batch
        kv = s.kv_bytes
        if s.kind == "prefill":
            return [Phase("prefill", b, s.seq_len, s.seq_len, s.logits, kv)]
        if s.kind == "decode":
            return [Phase("decode", b, 1, s.context, "last", kv)]
        return [Phase("prefill", b, s.prompt, s.prompt, "last", kv)] + [
            Phase("decode", b, 1, s.prompt + i + 1, "last", kv) for i in range(s.generate)
        ]

    def max_context(self, space_seq_len: int) -> int:
        """The longest row of attention scores any phase computes (softmax capacity)."""
        return max(p.context for p in self.phases(space_seq_len))

    def tag(self, space_seq_len: int) -> str:
        """A file-name key of the resolved scenario, e.g. `decode-b1-c128`."""
        s = self.resolve(space_seq_len)
        if s.kind == "prefill":
            t = f"prefill-b{s.batch}-l{s.seq_len}" + ("-last" if s.logits == "last" else "")
        elif s.kind == "decode":
            t = f"decode-b{s.batch}-c{s.context}"
        else:
            t = f"chat-b{s.batch}-p{s.prompt}-g{s.generate}"
        return t + (f"-kv{s.kv_bytes}" if s.kv_bytes != 1 else "")

    def unit(self, space_seq_len: int) -> str:
        """What one cost (latency, energy, EDP) of this scenario is for, in words."""
        s = self.resolve(space_seq_len)
        if s.kind == "prefill":
            return f"per prefill of {s.seq_len} tokens x batch {s.batch}"
        if s.kind == "decode":
            per = "one generated token" if s.batch == 1 else f"{s.batch} generated tokens"
            return f"per decode step ({per}) at context {s.context}, batch {s.batch}"
        return (
            f"per chat request ({s.prompt}-token prompt + {s.generate} decode steps), "
            f"batch {s.batch}"
        )

    def to_dict(self, space_seq_len: int | None = None) -> dict:
        """The fields this kind uses (resolved, with its tag and unit, given the space's
        sequence length)."""
        s = self if space_seq_len is None else self.resolve(space_seq_len)
        d = {f: getattr(s, f) for f in ("name", "kind", "batch", *_USES[s.kind], "kv_bytes")}
        if space_seq_len is not None:
            d["tag"] = self.tag(space_seq_len)
            d["unit"] = self.unit(space_seq_len)
        return d


@dataclass(frozen=True)
class Phase:
    """One pass: `tokens` new tokens of each of `batch` sequences, attending over `context`
    keys (prefill: the tokens themselves; decode: the KV cache), logits at every new
    position ('all') or only the last ('last')."""

    kind: str  # prefill | decode
    batch: int
    tokens: int
    context: int
    logits: str = "all"
    kv_bytes: int = 1

    @property
    def writes_cache(self) -> bool:
        """A decode step, or a prefill that serves (only its last logits are wanted: it
        feeds generation), appends its K and V rows to the KV cache in DRAM. A prefill
        with every logit (evaluation, today's costed unit) keeps no cache."""
        return self.kind == "decode" or self.logits == "last"

    @property
    def rows(self) -> int:
        """M of the weight GEMMs: every new token of every sequence."""
        return self.batch * self.tokens

    @property
    def logit_rows(self) -> int:
        """M of the LM head."""
        return self.rows if self.logits == "all" else self.batch


# the length fields each kind reads
_USES = {"prefill": ("seq_len", "logits"), "decode": ("context",), "chat": ("prompt", "generate")}

PRESETS: dict[str, Scenario] = {
    "prefill": Scenario(),
    "decode": Scenario(name="decode", kind="decode"),
    "chat": Scenario(name="chat", kind="chat"),
}


def get_scenario(spec: str | Scenario | None) -> Scenario:
    """A preset by name, with optional overrides `NAME:field=value,...` (e.g.
    `decode:batch=8,context=512`); a Scenario passes through; None is `prefill`."""
    if isinstance(spec, Scenario):
        return spec
    if spec is None or not str(spec).strip():
        return PRESETS["prefill"]
    name, _, rest = str(spec).strip().partition(":")
    base = lookup(PRESETS, name.strip(), "scenario", "Override fields as NAME:field=value,...")
    if not rest.strip():
        return base
    types = {f.name: f.type for f in fields(Scenario) if f.name not in ("name", "kind")}
    kw: dict = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in types:
            raise UserError(
                f"scenario '{spec}': '{item}' is not field=value with a field of "
                f"{', '.join(types)}; e.g. decode:batch=8,context=512"
            )
        if types[key] in (int, "int"):
            try:
                kw[key] = int(value)
            except ValueError:
                raise UserError(
                    f"scenario '{spec}': {key} must be an integer, got {value!r}"
                ) from None
        else:
            kw[key] = value.strip()
    return replace(base, **kw)
