"""Bad input to every command: exit code 2, one `error: ...` line that names the flag or file
(and what to do), and no traceback. One table; each row runs a CLI in-process through
`cosearch.cli.main_wrapper` on tiny made-up files. Rows that need a model use conftest's
tiny supernet; everything else fails before anything loads."""

from __future__ import annotations

import importlib
import os
import shlex
from pathlib import Path

import pytest

from cosearch.cli import main_wrapper

TINY_DATA = Path(__file__).parent / "data" / "tiny_corpus"
HW = "gemmini-64k-256k"
LUT = f"--preset tiny --hw {HW}"  # build_lut of the tiny space
SEARCH = "--preset tiny --out {tmp}/s"  # fails on the flag before loading a checkpoint
WALL = "--checkpoint {tmp}/no_ckpt --out {tmp}/w"  # options are checked before the checkpoint
WITH_MODEL = "--checkpoint {ckpt} --data-dir {data} --out {tmp}/s --population 4 --generations 0"

# (id, command, arguments, what the error line must say). Arguments are formatted with the
# paths of `files` ({tmp}, {file}, {shapes_*}, {lut_*}, {data_*}) and {ckpt}.
CASES = [
    # ----- build_lut: the shapes file -----
    ("shapes-header", "build_lut", "--shapes {shapes_header} --out {tmp}/o.csv --hw " + HW,
     ["header.csv", "M,K,N"]),
    ("shapes-negative", "build_lut", "--shapes {shapes_negative} --out {tmp}/o.csv --hw " + HW,
     ["negative.csv, line 2", "positive integers"]),
    ("shapes-zero", "build_lut", "--shapes {shapes_zero} --out {tmp}/o.csv --hw " + HW,
     ["zero.csv, line 3", "positive integers"]),
    ("shapes-text", "build_lut", "--shapes {shapes_text} --out {tmp}/o.csv --hw " + HW,
     ["text.csv, line 2", "'abc'"]),
    ("shapes-no-rows", "build_lut", "--shapes {shapes_norows} --out {tmp}/o.csv --hw " + HW,
     ["norows.csv", "no rows", "M,K,N"]),
    ("shapes-empty-file", "build_lut", "--shapes {shapes_empty} --out {tmp}/o.csv --hw " + HW,
     ["empty.csv", "empty file", "M,K,N"]),
    ("shapes-binary", "build_lut", "--shapes {shapes_binary} --out {tmp}/o.csv --hw " + HW,
     ["binary.csv", "not UTF-8"]),
    ("shapes-missing", "build_lut", "--shapes {tmp}/nope.csv --out {tmp}/o.csv --hw " + HW,
     ["--shapes", "nope.csv", "does not exist", "M,K,N"]),
    ("shapes-directory", "build_lut", "--shapes {tmp} --out {tmp}/o.csv --hw " + HW,
     ["--shapes", "is a directory"]),
    ("shapes-without-out", "build_lut", "--shapes {shapes_header} --hw " + HW, ["--out"]),
    ("out-is-directory", "build_lut", "--shapes {shapes_ok} --out {tmp} --hw " + HW,
     ["--out", "is a directory", "file name"]),
    ("out-under-a-file", "build_lut", "--shapes {shapes_ok} --out {file}/o.csv --hw " + HW,
     ["--out", "is a file, not a directory"]),
    # ----- build_lut: flags -----
    ("hw-malformed", "build_lut", "--preset tiny --hw gemmini-12k",
     ["gemmini-12k", "gemmini-<S>k-<A>k", "gemmini-64k-256k"]),
    ("hw-zero-sizes", "build_lut", "--preset tiny --hw gemmini-0k-0k",
     ["gemmini-0k-0k", "must be >= 1 KiB"]),
    ("hw-zero-pe", "build_lut", "--preset tiny --hw gemmini-64k-256k-pe0x0",
     ["pe0x0", "at least 1x1"]),
    ("hw-empty-list", "build_lut", "--preset tiny --hw ,", ["--hw", "gemmini-64k-256k"]),
    ("seq-lens-text", "build_lut", LUT + " --seq-lens abc", ["--seq-lens", "'abc'"]),
    ("seq-lens-negative", "build_lut", LUT + " --seq-lens -5", ["--seq-lens", "'-5'"]),
    ("seq-lens-zero", "build_lut", LUT + " --seq-lens 16,0", ["--seq-lens", "'0'"]),
    ("preset-unknown", "build_lut", "--preset nope --hw " + HW, ["--preset", "'nope'", "tiny"]),
    ("no-source", "build_lut", "--hw " + HW, ["--preset", "--shapes", "--help"]),
    ("jobs-zero", "build_lut", LUT + " --jobs 0", ["--jobs", "at least 1"]),
    ("jobs-text", "build_lut", LUT + " --jobs two", ["--jobs", "'two'"]),
    ("lut-dir-is-file", "build_lut", LUT + " --lut-dir {file}", ["--lut-dir", "is a file"]),
    ("timeloop-tiler", "build_lut", LUT + " --backend timeloop --regime gemmini-tiler",
     ["--regime optimal", "--backend timeloop"]),
    ("victory-zero", "build_lut", LUT + " --victory 0", ["--victory", "positive"]),
    ("unknown-flag", "build_lut", LUT + " --jbos 2", ["unrecognized arguments: --jbos", "--help"]),
    # ----- search: flags, checked before anything loads -----
    ("eval-tokens-negative", "search", SEARCH + " --eval-tokens -5", ["--eval-tokens", ">= 0"]),
    ("final-tokens-negative", "search", SEARCH + " --final-tokens -3", ["--final-tokens", ">= 0"]),
    ("budget-tokens-negative", "search", SEARCH + " --budget-tokens -1",
     ["--budget-tokens", ">= 0"]),
    ("budget-max-evals-negative", "search", SEARCH + " --budget-max-evals -1",
     ["--budget-max-evals", ">= 0"]),
    ("max-latency-zero", "search", SEARCH + " --max-latency-ms 0",
     ["--max-latency-ms", "positive"]),
    ("max-latency-negative", "search", SEARCH + " --max-latency-ms -2", ["--max-latency-ms"]),
    ("max-ppl-one", "search", SEARCH + " --max-ppl 1", ["--max-ppl", "never below 1"]),
    ("max-ppl-negative", "search", SEARCH + " --max-ppl -3", ["--max-ppl"]),
    ("baseline-ppl-zero", "search", SEARCH + " --baseline-ppl 0", ["--baseline-ppl", ">= 1"]),
    ("population-not-4k", "search", SEARCH + " --population 6", ["--population", "multiple of 4"]),
    ("population-text", "search", SEARCH + " --population many", ["--population", "'many'"]),
    ("generations-negative", "search", SEARCH + " --generations -1", ["--generations", ">= 0"]),
    ("mutation-prob-above-1", "search", SEARCH + " --mutation-prob 1.5",
     ["--mutation-prob", "[0, 1]"]),
    ("objectives-unknown", "search", SEARCH + " --objectives ppl,speed", ["--objectives", "edp"]),
    ("objectives-no-ppl", "search", SEARCH + " --objectives edp,latency", ["--objectives", "ppl"]),
    ("search-hw-zero-sizes", "search", SEARCH + " --hw gemmini-0k-0k", [">= 1 KiB"]),
    ("hw-twice", "search", SEARCH + f" --hw {HW},{HW}", ["--hw", "twice"]),
    ("budget-without-hw-search", "search", SEARCH + " --hw-budget-kib 100",
     ["--hw-budget-kib", "--hw search only"]),
    ("budget-zero", "search", SEARCH + " --hw search --hw-budget-kib 0",
     ["--hw-budget-kib", "positive"]),
    ("budget-too-small", "search", SEARCH + " --hw search --hw-budget-kib 8",
     ["--hw-budget-kib", "no hardware config fits", "needs 32 KiB"]),
    ("hw-pe-text", "search", SEARCH + " --hw search --hw-pe 16,big", ["--hw-pe", "'big'"]),
    ("backend-unknown", "search", SEARCH + " --backend fast", ["--backend", "analytical"]),
    ("regime-unknown", "search", SEARCH + " --regime best", ["--regime", "'best'"]),
    ("set-malformed", "search", SEARCH + " --set population=8", ["'population=8'", "section"]),
    ("set-unknown-field", "search", SEARCH + " --set search.pop=8", ["'pop'", "population"]),
    ("search-preset-unknown", "search", "--preset nope --out {tmp}/s", ["'nope'", "tiny"]),
    ("search-out-is-file", "search", "--preset tiny --out {file}", ["--out", "is a file"]),
    ("search-out-under-file", "search", "--preset tiny --out {file}/run",
     ["--out", "is a file, not a directory"]),
    ("search-out-holds-search", "search", "--preset tiny --out {old_search}",
     ["already holds a search", "--resume"]),
    ("checkpoint-missing", "search", "--checkpoint {tmp}/none --out {tmp}/s",
     ["none", "train_supernet"]),
    # ----- search: inputs judged once loaded (tiny supernet) -----
    ("lut-negative-energy", "search", WITH_MODEL + " --lut-dir {lut_negative}",
     ["gemmini-64k-256k.csv, line 2", "energy_pJ", "positive finite", "build_lut"]),
    ("lut-text-cycles", "search", WITH_MODEL + " --lut-dir {lut_text}",
     ["gemmini-64k-256k.csv, line 3", "cycles", "'fast'"]),
    ("lut-infinite-cycles", "search", WITH_MODEL + " --lut-dir {lut_inf}",
     ["gemmini-64k-256k.csv, line 2", "cycles", "'inf'"]),
    ("lut-unknown-regime", "search", WITH_MODEL + " --lut-dir {lut_regime}",
     ["gemmini-64k-256k.csv, line 2", "regime 'best'"]),
    ("lut-other-hw-row", "search", WITH_MODEL + " --lut-dir {lut_foreign}",
     ["gemmini-64k-256k.csv, line 2", "gemmini-256k-64k"]),
    ("lut-bad-hw-name", "search", WITH_MODEL + " --lut-dir {lut_badhw}",
     ["gemmini-64k-256k.csv, line 2", "'gemmini-12k'"]),
    ("lut-not-a-lut", "search", WITH_MODEL + " --lut-dir {lut_header}",
     ["gemmini-64k-256k.csv", "not a LUT", "energy_pJ"]),
    ("lut-missing-rows-strict", "search", WITH_MODEL + " --lut-dir {lut_partial} --strict",
     ["missing from", "gemmini-64k-256k.csv", "build_lut"]),
    ("lut-missing-backend-lut", "search", WITH_MODEL + " --lut-dir {tmp}/no_luts --backend lut",
     ["no LUT for preset 'tiny'", "python -m cosearch.build_lut"]),
    ("baseline-checkpoint-missing", "search", WITH_MODEL + " --baseline-checkpoint {tmp}/none",
     ["--baseline-checkpoint", "none", "train_supernet"]),
    ("search-empty-data", "search",
     "--checkpoint {ckpt} --data-dir {data_empty} --out {tmp}/s",
     ["wiki.train.tokens", "no words", "--data-dir"]),
    # ----- profile_wall -----
    ("wall-out-is-file", "profile_wall", "--checkpoint {tmp}/no_ckpt --out {file}",
     ["--out", "is a file"]),
    ("wall-out-under-file", "profile_wall", "--checkpoint {tmp}/no_ckpt --out {file}/w",
     ["--out", "is a file, not a directory"]),
    ("wall-seq-text", "profile_wall", WALL + " --seq 128,abc", ["--seq", "'abc'"]),
    ("wall-seq-zero", "profile_wall", WALL + " --seq 0", ["--seq", "'0'"]),
    ("wall-attention", "profile_wall", WALL + " --attention flash", ["--attention", "dense"]),
    ("wall-runs", "profile_wall", WALL + " --runs 3", ["--runs", "at least 5"]),
    ("wall-batch", "profile_wall", WALL + " --batch 0", ["--batch", "positive"]),
    ("wall-mem-limit", "profile_wall", WALL + " --mem-limit-gb -1", ["--mem-limit-gb"]),
    ("wall-timeout", "profile_wall", WALL + " --timeout-s 0", ["--timeout-s", "positive"]),
    ("wall-warmup", "profile_wall", WALL + " --warmup -1", ["--warmup"]),
    ("wall-pareto-max", "profile_wall", WALL + " --pareto-max 0", ["--pareto-max"]),
    ("wall-hw", "profile_wall", WALL + " --hw gemmini-12k", ["gemmini-12k"]),
    ("wall-no-out", "profile_wall", "--checkpoint {tmp}/no_ckpt", ["--out", "required"]),
    ("wall-checkpoint-missing", "profile_wall", WALL, ["no_ckpt", "train_supernet"]),
    ("wall-random-zero", "profile_wall", "--checkpoint {ckpt} --out {tmp}/w --archs random:0",
     ["--archs", "random:0", "positive integer"]),
    ("wall-pareto-missing", "profile_wall",
     "--checkpoint {ckpt} --out {tmp}/w --archs pareto:{tmp}/none.json",
     ["none.json", "pareto.json"]),
    # ----- train_supernet (flags and data; nothing here trains) -----
    ("train-preset", "train_supernet", "--preset nope --workdir {tmp}/t", ["'nope'", "tiny"]),
    ("train-set", "train_supernet", "--preset tiny --set model.nope=1 --workdir {tmp}/t",
     ["'nope'", "fields"]),
    ("train-steps-text", "train_supernet", "--preset tiny --steps ten", ["--steps", "'ten'"]),
    ("train-steps-negative", "train_supernet", "--preset tiny --steps -5 --workdir {tmp}/t",
     ["--steps -5", "positive"]),
    ("train-epochs-negative", "train_supernet", "--preset tiny --epochs -1 --workdir {tmp}/t",
     ["--epochs -1", "positive"]),
    ("train-output-banana", "train_supernet",
     "--preset tiny --set model.output=banana --workdir {tmp}/t",
     ["model.output='banana'", "adaptive"]),
    ("train-schedule-unknown", "train_supernet",
     "--preset tiny --set train.schedule=linear --workdir {tmp}/t", ["train.schedule", "wsd"]),
    ("train-dropout-range", "train_supernet",
     "--preset tiny --set model.dropout=1.5 --workdir {tmp}/t", ["model.dropout", "[0, 1]"]),
    ("search-resume-nothing", "search",
     "--checkpoint {ckpt} --data-dir {data} --out {tmp}/nosearch --resume",
     ["--resume", "no search"]),
    ("train-resume-nothing", "train_supernet",
     "--preset tiny --data-dir {data} --resume --workdir {tmp}/empty", ["--resume", "no run"]),
    ("train-export-alone", "train_supernet", "--export {tmp}/x", ["--export", "--workdir"]),
    ("train-from-scratch", "train_supernet",
     "--preset tiny --data-dir {data} --from-scratch {tmp}/arch.json --workdir {tmp}/t",
     ["arch.json", "largest"]),
    ("data-missing", "train_supernet", "--preset tiny --data-dir {tmp}/nodata --workdir {tmp}/t",
     ["nodata", "does not exist", "--data-dir"]),
    ("data-is-file", "train_supernet", "--preset tiny --data-dir {file} --workdir {tmp}/t",
     ["is a file", "--data-dir"]),
    ("data-lacks-split", "train_supernet",
     "--preset tiny --data-dir {data_partial} --workdir {tmp}/t",
     ["wiki.valid.tokens", "wiki.test.tokens", "--data-dir"]),
    ("data-empty-files", "train_supernet",
     "--preset tiny --data-dir {data_empty} --workdir {tmp}/t",
     ["wiki.train.tokens", "no words"]),
    ("data-not-utf8", "train_supernet",
     "--preset tiny --data-dir {data_binary} --workdir {tmp}/t",
     ["wiki.train.tokens", "not UTF-8"]),
]  # fmt: skip


def _write_lut_variants(root: Path) -> dict[str, Path]:
    """A valid tiny LUT (analytical) and copies with one bad row each."""
    from cosearch.hw.build import LutJob, run
    from cosearch.hw.gemmini import get_hw

    good = root / "good"
    (path,) = run(LutJob(hws=(get_hw(HW),), preset="tiny", lut_dir=str(good)))
    header, first, second, *rest = path.read_text().splitlines()
    fields = header.split(",")

    def variant(
        name: str, line2: str = first, line3: str = second, head: str = header, keep=rest
    ) -> Path:
        d = root / name
        (d / "tiny").mkdir(parents=True)
        (d / "tiny" / path.name).write_text("\n".join([head, line2, line3, *keep]) + "\n")
        return d

    def with_value(line: str, column: str, value: str) -> str:
        cells = line.split(",")
        cells[fields.index(column)] = value
        return ",".join(cells)

    return {
        "lut_negative": variant("negative", with_value(first, "energy_pJ", "-5.0")),
        "lut_text": variant("text", line3=with_value(second, "cycles", "fast")),
        "lut_inf": variant("inf", with_value(first, "cycles", "inf")),
        "lut_regime": variant("regime", with_value(first, "regime", "best")),
        "lut_foreign": variant("foreign", with_value(first, "hw", "gemmini-256k-64k")),
        "lut_badhw": variant("badhw", with_value(first, "hw", "gemmini-12k")),
        "lut_header": variant("header", head=header.replace("energy_pJ", "energy")),
        "lut_partial": variant("partial", keep=rest[:-1]),  # one shape fewer (the largest)
    }


@pytest.fixture(scope="module")
def luts(tmp_path_factory) -> dict[str, Path]:
    return _write_lut_variants(tmp_path_factory.mktemp("luts"))


@pytest.fixture()
def files(tmp_path, luts) -> dict[str, Path]:
    """Every made-up bad file the table refers to."""
    f: dict[str, Path] = {"tmp": tmp_path, **luts}
    shapes = {
        "ok": "M,K,N\n16,16,16\n",
        "header": "M,K,X\n16,16,16\n",
        "negative": "M,K,N\n-16,16,16\n",
        "zero": "M,K,N\n16,16,16\n16,0,16\n",
        "text": "op,M,K,N\nqkv,abc,16,16\n",
        "norows": "M,K,N\n",
        "empty": "",
    }
    for name, text in shapes.items():
        f[f"shapes_{name}"] = tmp_path / f"{name}.csv"
        f[f"shapes_{name}"].write_text(text)
    f["shapes_binary"] = tmp_path / "binary.csv"
    f["shapes_binary"].write_bytes(b"M,K,N\n\xff\xfe16,16,16\n")
    f["file"] = tmp_path / "a_file"
    f["file"].write_text("not a directory\n")
    f["old_search"] = tmp_path / "old_search"
    f["old_search"].mkdir()
    (f["old_search"] / "config.json").write_text("{}\n")
    for name, content in (("empty", b""), ("binary", b"\xff\xfe\xfa words\n")):
        d = f[f"data_{name}"] = tmp_path / f"data_{name}"
        d.mkdir()
        for split in ("train", "valid", "test"):
            (d / f"wiki.{split}.tokens").write_bytes(content)
    d = f["data_partial"] = tmp_path / "data_partial"
    d.mkdir()
    (d / "wiki.train.tokens").write_text("a b c\n")
    f["data"] = TINY_DATA
    return f


def _args(template: str, paths: dict[str, Path]) -> list[str]:
    return shlex.split(template.format(**{k: str(v) for k, v in paths.items()}))


@pytest.mark.parametrize("case_id,command,template,says", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_exit_2(
    case_id, command, template, says, files, request, capsys, monkeypatch
):
    monkeypatch.delenv("COSEARCH_DATA", raising=False)
    monkeypatch.setenv("COSEARCH_CACHE", str(files["tmp"] / "cache"))
    if "{ckpt}" in template:
        files = {**files, "ckpt": request.getfixturevalue("tiny_checkpoint")}
    main = importlib.import_module(f"cosearch.{command}").main
    code = main_wrapper(main, _args(template, files))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(errors) == 1, err
    for text in says:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"


def test_the_table_covers_every_command_with_at_least_40_inputs():
    commands = {c[1] for c in CASES}
    assert commands == {"build_lut", "search", "profile_wall", "train_supernet"}
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into read-only directories; the path-under-a-file rows cover the check",
)
@pytest.mark.parametrize("command", ["search", "profile_wall"])
def test_read_only_out_directory(command, files, capsys):
    ro = files["tmp"] / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        args = ["--out", str(ro / "run")]
        args += ["--preset", "tiny"] if command == "search" else ["--checkpoint", str(ro)]
        main = importlib.import_module(f"cosearch.{command}").main
        assert main_wrapper(main, args) == 2
        err = capsys.readouterr().err
        assert "no write permission" in err and "--out" in err and "Traceback" not in err
    finally:
        ro.chmod(0o755)


def test_results_are_written_readable_by_others(files):
    from cosearch.runinfo import write_json_atomic

    path = files["tmp"] / "result.json"
    write_json_atomic(path, {"a": 1})
    assert path.stat().st_mode & 0o044 == 0o044  # group and others may read (umask 022)
