"""Post-training int8 (cosearch.supernet.quant): the quantiser round-trips within half a
step, every GEMM weight lands on its per-channel grid, calibration is deterministic, the
int8 perplexity of the tiny supernet is finite and close to float32 (`evaluate --int8`),
and a `--ppl int8` search runs and reports each front member's int8 - float32."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cosearch.supernet.quant import (
    QMAX,
    absmax_scale,
    calibrate,
    calibration_windows,
    contraction_axes,
    dequantise,
    fake_quant,
    quantise,
    quantise_params,
)


def test_quantise_dequantise_round_trips_within_half_a_step():
    x = jax.random.normal(jax.random.key(0), (64, 5, 7)) * jnp.arange(1, 8)  # channel ranges
    for axes in (None, (0,), (0, 1)):  # per tensor, per (5, 7) channel, per 7 channels
        s = absmax_scale(x, axes)
        q = quantise(x, s)
        assert q.dtype == jnp.int8 and int(jnp.abs(q).max()) == QMAX  # the range is used
        err = jnp.abs(dequantise(q, s) - x)
        assert bool(jnp.all(err <= s / 2 * (1 + 1e-6)))
        np.testing.assert_array_equal(fake_quant(x, s), dequantise(q, s))
    # beyond the range: clipped to +-127 steps; a zero scale quantises to zero, not NaN
    s = jnp.float32(0.1)
    assert float(fake_quant(jnp.float32(100.0), s)) == pytest.approx(12.7)
    assert quantise(jnp.float32(-100.0), s) == -QMAX
    assert float(fake_quant(jnp.float32(3.0), jnp.float32(0.0))) == 0.0


def _tiny_dense():
    from test_decode import _dense_models

    models, x = _dense_models(0)
    return models[0], x


def test_every_gemm_weight_is_on_its_per_channel_grid():
    (model, params), _ = _tiny_dense()
    q = quantise_params(params)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    qflat = dict(jax.tree_util.tree_flatten_with_path(q)[0])
    n_quantised = 0
    for path, w in flat:
        axes = contraction_axes(path[-1].key)
        if axes is None:  # biases and layer norms stay float
            np.testing.assert_array_equal(qflat[path], w)
            continue
        n_quantised += 1
        s = absmax_scale(w, axes)
        codes = np.asarray(qflat[path] / s)
        np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)  # integers
        assert np.abs(codes).max() == pytest.approx(QMAX, abs=1e-3)
        assert bool(jnp.all(jnp.abs(qflat[path] - w) <= s / 2 * (1 + 1e-5)))
    # q, k, v, o, two FFN matrices per layer, plus the adaptive embedding's matrices
    assert n_quantised >= 6 * len(model.heads) + 3
    with pytest.raises(ValueError, match="no quantisation rule"):
        quantise_params({"params": {"mystery": jnp.ones((2, 2))}})


def test_calibration_is_deterministic_and_covers_every_gemm_input():
    (model, params), _ = _tiny_dense()
    train = np.arange(1000) % model.vocab
    w = calibration_windows(train, 16, 5)
    assert w.shape == (5, 16) and w[0, 0] == 0 and w[-1, -1] == train[-1]
    np.testing.assert_array_equal(w, calibration_windows(train, 16, 5))
    a = calibrate(model, params, w, 2)
    b = calibrate(model, params, w, 5)  # batching does not change the max
    n = len(model.heads)
    sites = {f"l{i}.{s}" for i in range(n) for s in ("ln1", "q", "k", "v", "ctx", "ln2", "gelu")}
    assert set(a) == sites | {"out"}
    for site in a:
        assert float(a[site]) > 0
        assert float(a[site]) == pytest.approx(float(b[site]), rel=1e-6)
    with pytest.raises(ValueError, match="calibration needs"):
        calibration_windows(train[:10], 16)


def test_int8_ppl_of_the_tiny_supernet_is_finite_and_close(
    tiny_checkpoint, tiny_data, capsys, evaluate_json
):
    from cosearch.evaluate import main

    rows, printed = evaluate_json("--int8")
    for r in printed:
        assert np.isfinite(r["ppl_int8"]) and r["ppl_int8"] > 1
        assert r["ppl_int8"] == pytest.approx(r["ppl"], rel=0.05)
        assert r["delta_ppl_int8"] == pytest.approx(r["ppl_int8"] - r["ppl"])
        assert r["delta_ppl_int8_se"] >= 0 and r["int8_recipe"].startswith("int8-")
    assert rows[0]["ppl_int8"] != rows[0]["ppl"]  # something was quantised
    # the table prints the int8 column too, from the cache (no second evaluation)
    main(["--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_data), "--int8"])
    assert "int8" in capsys.readouterr().out


def test_search_with_int8_perplexity(tiny_checkpoint, tiny_data, tmp_path, capsys):
    from cosearch.search import main

    out = tmp_path / "search"
    argv = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--data-dir",
        str(tiny_data),
        "--backend",
        "analytical",
        "--quiet",
        "--out",
        str(out),
        "--population",
        "4",
        "--generations",
        "1",
        "--no-final-eval",
        "--ppl",
        "int8",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["ppl_precision"] == "int8" and pareto["front"]
    for f in pareto["front"]:  # search ppl is int8; its difference to float32 per member
        assert f["delta_ppl_int8"] == pytest.approx(f["ppl"] - f["ppl_f32"])
        assert abs(f["delta_ppl_int8"]) < 0.05 * f["ppl_f32"]
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["ppl"] == "int8"
    summary = (out / "summary.md").read_text()
    assert "post-training int8" in summary and "Δppl int8 − f32" in summary
    assert main([*argv[:-2], "--ppl", "int4"]) == 2  # an unknown precision: one line
