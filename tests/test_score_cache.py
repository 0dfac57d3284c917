"""cosearch.supernet.score_cache: an append-only log that parallel processes share."""

from __future__ import annotations

import json

from cosearch.supernet.score_cache import LOG, SNAPSHOT, ScoreCache

W = {"nll": [1.5, 2.25], "tokens": [3, 4]}


def test_two_processes_share_scores_through_the_log(tmp_path):
    a, b = ScoreCache(tmp_path), ScoreCache(tmp_path)
    a.put("k1", W)
    assert "k1" not in b and b.refresh() == 1 and b["k1"] == W
    b.put("k2", {"nll": [0.1], "tokens": [1]})
    assert a.refresh() == 1 and a.refresh() == 0  # only new bytes are read
    assert "k2" in a and len(ScoreCache(tmp_path)) == 2  # a new process reads everything
    lines = (tmp_path / LOG).read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["k1", "k2"]
    a.put("k3", W, write=False)  # memory only
    assert "k3" not in ScoreCache(tmp_path)


def test_snapshot_of_the_earlier_format_is_read_and_never_written(tmp_path):
    (tmp_path / SNAPSHOT).write_text(json.dumps({"old": W, "bare": 12.5}))
    c = ScoreCache(tmp_path)
    assert c["old"] == W and "bare" not in c  # bare perplexities were not paired: dropped
    c.put("new", W)
    assert json.loads((tmp_path / SNAPSHOT).read_text()) == {"old": W, "bare": 12.5}


def test_unfinished_and_corrupt_lines(tmp_path, caplog):
    c = ScoreCache(tmp_path)
    with open(tmp_path / LOG, "ab") as f:  # a writer that crashed mid-line
        f.write(b'{"key": "half", "value": {"nll": [1.')
    assert c.refresh() == 0  # an unfinished line waits
    c.put("k", W)  # ends the broken line first, so its own line stays whole
    fresh = ScoreCache(tmp_path)
    assert fresh["k"] == W and "half" not in fresh
    assert "corrupt line" in caplog.text
    # a log replaced by a shorter one is read again from its start
    (tmp_path / LOG).write_text(json.dumps({"key": "z", "value": W}) + "\n")
    assert fresh.refresh() == 1 and "z" in fresh


def test_unwritable_folder_still_scores(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    c = ScoreCache(blocker / "cache")  # cannot be made: scores stay in memory
    c.put("k", W)
    assert c["k"] == W and c.refresh() == 0
