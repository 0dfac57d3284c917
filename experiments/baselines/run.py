"""Count-based baselines on WikiText-2: the floor every perplexity in cosearch is read against.

Unigram (maximum likelihood) and interpolated Kneser-Ney bigram and trigram models
(`cosearch.ngram`) fitted on the train split with the project's vocabulary, scored on the
whole validation and test splits exactly as the neural evaluator scores them (every token
but a split's first is a target). About 15 s on 2 cores.

    python experiments/baselines/run.py            # needs COSEARCH_DATA or --data-dir
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cosearch.data import load_corpus
from cosearch.ngram import NGramModel
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic

HERE = Path(__file__).parent
MODELS = {
    1: "unigram (maximum likelihood)",
    2: "interpolated Kneser-Ney bigram",
    3: "interpolated Kneser-Ney trigram",
}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-dir", default=None, help="WikiText-2 directory (default: $COSEARCH_DATA)"
    )
    p.add_argument("--out", default=str(HERE / "results"), help="output directory")
    args = p.parse_args()
    corpus = load_corpus(args.data_dir)
    rows = []
    for order, name in MODELS.items():
        t0 = time.perf_counter()
        m = NGramModel(order, corpus.vocab_size).fit(corpus.train)
        row = {"order": order, "model": name}
        for split in ("valid", "test"):
            tokens = corpus.split(split)
            row[f"{split}_ppl"] = round(m.perplexity(tokens), 2)
            row[f"{split}_tokens"] = len(tokens) - 1
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        print(f"{name}: valid {row['valid_ppl']:.1f}, test {row['test_ppl']:.1f}")
    out = Path(args.out)
    write_json_atomic(
        out / "baselines.json",
        {
            "what": "count-based n-gram perplexities on the whole WikiText-2 splits "
            "(word level, the project's 33,278-word vocabulary incl. <eos>)",
            "command": "python experiments/baselines/run.py",
            "git_commit": git_commit(),
            "vocab_size": corpus.vocab_size,
            "models": rows,
        },
    )
    lines = ["| model | valid ppl | test ppl |", "|---|---|---|"]
    lines += [f"| {r['model']} | {r['valid_ppl']:.1f} | {r['test_ppl']:.1f} |" for r in rows]
    write_text_atomic(out / "baselines.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
