"""The claims measured a second time under the protocol of the paper behind each.

Unit tier: the measures against NumPy references (the non-convexity ratio, local minima of a grid,
the outlier share, the max-norm projection), the verdict rules on hand-made results, the
discussion's verdict table, the record's round trip, the report's Discussion section, and the
wrapper on stand-in experiments (a quick run is unchanged; a full run adds the measurement, its
figure and its numbers). Integration tier: the five experiments through the CLI in full mode, with
reduced sizes (each experiment's own part at its quick settings, each protocol at small ones):
results.json holds, for each of the six claims, both measurements with rule, number and verdict,
and the discussion of each that did not hold under one of them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import needs

from jaxopt_lectures.experiments.api import Claim, Config, Experiment, Figure, Summary
from jaxopt_lectures.experiments.lecture import (
    bn_spectrum,
    depth_sweep,
    dropout_protocol,
    protocols,
    tuned_rates,
)
from jaxopt_lectures.experiments.lecture.protocols import (
    Discussion,
    PaperProtocol,
    discussion_text,
    with_protocol,
)
from jaxopt_lectures.experiments.record import Measurement, RunKey, RunRecord
from jaxopt_lectures.experiments.report import render_markdown
from jaxopt_lectures.experiments.store import Results, Slot

# ------------------------------------------------------------------------------------------------
# Unit tier: the measures
# ------------------------------------------------------------------------------------------------


def test_nonconvexity_counts_negative_curvature_against_exact_eigenvalues() -> None:
    rng = np.random.default_rng(0)
    lo, hi = [], []
    for _ in range(20):
        a = rng.standard_normal((6, 6))
        eig = np.linalg.eigvalsh(a + a.T + 5.0 * np.eye(6))
        lo.append(eig[0])
        hi.append(eig[-1])
    ratio = depth_sweep.nonconvexity(np.array(lo), np.array(hi))
    expected = [max(0.0, -a) / b for a, b in zip(lo, hi, strict=True)]
    np.testing.assert_allclose(ratio, expected)
    assert np.any(ratio == 0.0)
    assert np.any(ratio > 0.0)


def test_slice_minima_against_a_loop() -> None:
    rng = np.random.default_rng(1)
    grids = rng.standard_normal((3, 7, 9))
    expected = [
        sum(
            all(g[i, j] < g[i + a, j + b] for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b)
            for i in range(1, 6)
            for j in range(1, 8)
        )
        for g in grids
    ]
    assert depth_sweep.slice_minima(grids).tolist() == expected


def test_outlier_share_is_exact_for_exact_quadrature_and_scale_invariant() -> None:
    eig = np.array([30.0, 2.0, 1.0, 0.5, 0.0, -0.5])
    d = len(eig)
    nodes, weights = eig[None], np.full((1, d), 1.0 / d)  # a probe that sees each equally
    share = bn_spectrum.outlier_share(nodes, weights, d)
    assert share == pytest.approx(eig.max() ** 2 / np.sum(eig**2))
    assert bn_spectrum.outlier_share(7.0 * nodes, weights, d) == pytest.approx(share)


def test_max_norm_projects_hidden_columns_only() -> None:
    rng = np.random.default_rng(2)
    params = [
        {"w": jnp.asarray(rng.standard_normal((5, 4)) * 3), "b": jnp.ones(4)},
        {"w": jnp.asarray(rng.standard_normal((4, 4)) * 0.1), "b": jnp.ones(4)},
        {"w": jnp.asarray(rng.standard_normal((4, 3)) * 9), "b": jnp.ones(3)},
    ]
    out = jax.jit(lambda p: dropout_protocol.max_norm(p, 2.0))(params)
    for i, (p, q) in enumerate(zip(params, out, strict=True)):
        w, v = np.asarray(p["w"], np.float64), np.asarray(q["w"], np.float64)
        norms = np.linalg.norm(w, axis=0)
        expected = w * np.minimum(1.0, 2.0 / norms) if i < 2 else w
        np.testing.assert_allclose(v, expected, rtol=1e-6)
        np.testing.assert_array_equal(q["b"], p["b"])


def test_depth_sweep_network_skips_the_layers_it_does_not_have() -> None:
    settings = dataclasses.replace(depth_sweep.FULL, depths=(2, 4), width=8)
    params = depth_sweep.init(jax.random.key(0), 5, 3, settings)
    x = jax.random.normal(jax.random.key(1), (6, 5))

    def numpy_mlp(depth: int) -> np.ndarray:
        h = np.maximum(0, np.asarray(x) @ params["first"]["w"] + params["first"]["b"])
        for i in range(depth - 1):
            h = np.maximum(0, h @ params["hidden"]["w"][i] + params["hidden"]["b"][i])
        return h @ params["last"]["w"] + params["last"]["b"]

    run = jax.jit(depth_sweep.apply)
    for depth in (1, 2, 4):
        np.testing.assert_allclose(run(params, x, depth), numpy_mlp(depth), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Unit tier: the verdict rules on hand-made results
# ------------------------------------------------------------------------------------------------


def _depth_result(mean_ratio: np.ndarray) -> depth_sweep.DepthSweepResult:
    depths = np.array([2, 6, 12, 20, 30][: len(mean_ratio)])
    zeros = np.zeros((len(depths), mean_ratio.shape[1]))
    return depth_sweep.DepthSweepResult(
        depths=depths,
        alphas=np.linspace(-1, 1, 5),
        curvature_alphas=np.linspace(-1, 1, 3),
        train_loss=zeros,
        train_acc=zeros,
        surface=np.zeros((len(depths), 5, 5)),
        lam_max=np.ones((*zeros.shape, 3, 3)),
        lam_min=np.ones((*zeros.shape, 3, 3)),
        ratio=np.ones((*zeros.shape, 3, 3)),
        mean_ratio=mean_ratio,
        slice_minima=np.ones(len(depths)),
        settings=depth_sweep.FULL,
        timings=(),
    )


def test_depth_sweep_rule_needs_a_gap_beyond_the_seed_spread_and_a_rising_trend() -> None:
    rising = np.array([[0.1, 0.12], [0.2, 0.21], [0.3, 0.33], [0.5, 0.52], [0.6, 0.61]])
    assert depth_sweep.measurement(_depth_result(rising)).held
    noisy = rising.copy()
    noisy[-1] = [0.1, 1.2]  # deepest mean 0.65 but a std of 0.55
    assert not depth_sweep.measurement(_depth_result(noisy)).held
    falling = rising[::-1].copy()
    m = depth_sweep.measurement(_depth_result(falling))
    assert not m.held
    assert "+-" in m.measured
    assert "seed spread" in m.measured


def _tuned(sgd: list[list[float]], adam: list[list[float]], rms: list[list[float]]) -> Any:
    grids = {"sgd": (0.01, 0.1), "adam": (1e-3, 3e-3), "rmsprop": (1e-3, 0.01)}
    vals = {"sgd": np.array(sgd), "adam": np.array(adam), "rmsprop": np.array(rms)}
    return tuned_rates.TunedRatesResult(
        rates={m: np.array(g) for m, g in grids.items()},
        best_val_loss=vals,
        final_train_loss=vals,
        test_acc={m: np.full_like(v, 0.9) for m, v in vals.items()},
        seeds=(0, 1, 2),
        epochs=3,
        settings=tuned_rates.FULL,
        timings=(),
    )


def test_tuned_rates_picks_each_best_rate_and_compares_beyond_the_spread() -> None:
    sgd = [[0.20, 0.21, 0.19], [0.10, 0.11, 0.09]]  # best at 0.1
    adam = [[0.05, 0.05, 0.05], [0.30, 0.3, 0.3]]  # best at 1e-3, margin 0.05 > spread 0.008
    rms = [[0.40, 0.4, 0.4], [0.06, 0.061, 0.059]]
    r = _tuned(sgd, adam, rms)
    assert tuned_rates.best_rates(r) == {"sgd": 1, "adam": 0, "rmsprop": 1}
    assert tuned_rates.measurement(r).held
    close = _tuned(sgd, [[0.095, 0.1, 0.105], [0.3, 0.3, 0.3]], rms)  # margin 0.005 < spread
    m = tuned_rates.measurement(close)
    assert not m.held
    assert "seed spread" in m.measured


def _dropout_result(val_err: np.ndarray, train_err: np.ndarray) -> Any:
    sizes = np.array([100, 200, 500])
    curve = lambda a: np.stack([np.ones_like(a), a], axis=-1)  # noqa: E731  (start, end)
    return dropout_protocol.DropoutProtocolResult(
        train_sizes=sizes,
        steps=np.array([0, 10]),
        train_error=curve(train_err),
        val_error=curve(val_err),
        train_loss=curve(train_err),
        val_loss=curve(val_err),
        computed_here=True,
        settings=dropout_protocol.FULL,
        timings=(),
    )


def test_dropout_rules_cell_by_cell() -> None:
    # (arms, sizes, seeds)
    val = np.array(
        [[[0.2, 0.2], [0.1, 0.1], [0.05, 0.05]], [[0.15, 0.15], [0.08, 0.08], [0.06, 0.06]]]
    )
    train = np.array(
        [[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], [[0.1, 0.1], [0.05, 0.05], [0.02, 0.02]]]
    )
    r = _dropout_result(val, train)
    better = dropout_protocol.better(r)
    assert not better.held  # n=500: 0.06 with dropout against 0.05 without
    assert "2 of 3 sizes" in better.measured
    assert dropout_protocol.resilient(r).held  # gaps 0.05, 0.03, 0.04 against 0.2, 0.1, 0.05
    assert dropout_protocol.smaller_gap_at(r, 200).held


# ------------------------------------------------------------------------------------------------
# Unit tier: discussions, records, the report, the wrapper
# ------------------------------------------------------------------------------------------------

VERDICTS = {
    (False, True): "right under the paper's conditions",
    (False, False): "wrong here",
    (True, False): "undecided",
}
DISCUSSION = Discussion("the lecture says X.", "the paper found Y.", VERDICTS)


def _claim(held: bool, second: bool | None) -> Claim:
    also = () if second is None else (Measurement("Paper (2000): setup", second, "m 2.5", "r2"),)
    return Claim("X holds", held, "m 1.5", "r1", also)


def test_discussion_text_takes_the_verdict_of_the_outcome() -> None:
    for (first, second), verdict in VERDICTS.items():
        text = discussion_text(_claim(first, second), "Paper (2000): setup", DISCUSSION)
        assert text.endswith(f"Verdict: {verdict}")
        assert "the lecture says X." in text
        assert "the paper found Y." in text
        assert "m 1.5" in text
        assert "m 2.5" in text
        assert "r1" in text
        assert "r2" in text
    assert discussion_text(_claim(True, True), "p", DISCUSSION) == ""
    assert discussion_text(_claim(True, None), "p", DISCUSSION) == ""
    quick = discussion_text(_claim(False, None), "Paper (2000): setup", DISCUSSION)
    assert "full run only" in quick
    assert "Verdict" not in quick


def _record(claims: tuple[Claim, ...]) -> RunRecord:
    return RunRecord(
        experiment="alpha",
        key=RunKey("full", 0, "hash", "0"),
        status="ok",
        data="digits",
        started_at="2026-01-01T00:00:00",
        finished_at="2026-01-01T00:00:01",
        wall_time_s=1.0,
        claims=claims,
    )


def test_claims_with_a_second_measurement_survive_json_and_old_records_read() -> None:
    claim = dataclasses.replace(_claim(False, True), discussion="text")
    record = _record((claim, _claim(True, None)))
    back = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert back == record
    old = record.to_json()
    for c in old["claims"]:  # type: ignore[union-attr]
        del c["also"], c["discussion"]  # type: ignore[index]
    assert RunRecord.from_json(old).claims[0].also == ()
    assert claim.all_held is False
    assert _claim(True, True).all_held is True


def test_report_shows_both_measurements_and_the_discussion() -> None:
    failing = dataclasses.replace(_claim(False, True), discussion="The lecture: X.\nVerdict: Z.")
    results = Results({"alpha": {"full": Slot(_record((failing, _claim(True, None))), None)}})
    text = render_markdown(results, {})
    assert "X holds [Paper (2000)]" in text
    assert "## Discussion: the claims that did not hold under a measurement" in text
    assert "- The lecture: X.\n- Verdict: Z." in text
    assert "1 of them were measured a second time" in text
    quiet = Results({"alpha": {"full": Slot(_record((_claim(True, True),)), None)}})
    assert "Discussion" not in render_markdown(quiet, {})


class _Own(NamedTuple):
    value: float
    timings: tuple[Any, ...] = ()


class _Paper(NamedTuple):
    value: float
    timings: tuple[Any, ...] = ()


def _stand_in() -> tuple[Experiment[Any], PaperProtocol[Any, Any]]:
    base = Experiment(
        "alpha",
        "t",
        "s",
        "-",
        1,
        lambda config, seed: _Own(float(seed)),
        lambda r: Figure("own.png", None),
        lambda r: [Claim("a", True, "1", "r"), Claim("b", r.value > 5, f"{r.value}", "r")],
        lambda r: Summary([("v", str(r.value))], {"v": r.value}, {"s": 1}),
    )
    protocol = PaperProtocol(
        name="paper",
        description="Paper (2000): setup",
        compute=lambda config, seed, own: _Paper(own.value + 10),
        figure=lambda r: Figure("paper.png", None),
        measurements=lambda r: {1: Measurement("Paper (2000): setup", r.value > 5, "m 1", "r2")},
        discussions={1: DISCUSSION},
        numbers=lambda r: {"value": r.value},
    )
    return base, protocol


def test_with_protocol_leaves_a_quick_run_as_it_was() -> None:
    base, protocol = _stand_in()
    wrapped = with_protocol(base, protocol)
    advanced = []
    config = Config(quick=True, advance=advanced.append)
    result = wrapped.compute(config, 1)
    assert result.paper is None
    assert advanced == [1]
    assert wrapped.stages == base.stages + 1
    assert wrapped.figure(result) == (Figure("own.png", None),)
    assert wrapped.summarize(result) == base.summarize(result.base)
    own, claim = base.claims(result.base), wrapped.claims(result)
    assert [(c.claim, c.held, c.measured) for c in claim] == [
        (c.claim, c.held, c.measured) for c in own
    ]
    assert claim[1].also == ()
    assert "full run only" in claim[1].discussion


def test_with_protocol_adds_the_measurement_its_figure_and_numbers_in_a_full_run() -> None:
    base, protocol = _stand_in()
    wrapped = with_protocol(base, protocol)
    result = wrapped.compute(Config(), 1)
    assert result.paper == _Paper(11.0)
    assert [f.filename for f in wrapped.figure(result)] == ["own.png", "paper.png"]
    claims = wrapped.claims(result)
    assert claims[0].also == ()
    assert claims[0].discussion == ""
    assert claims[1].held is False
    assert claims[1].also[0].held is True
    assert claims[1].discussion.endswith(f"Verdict: {VERDICTS[(False, True)]}")
    numbers = wrapped.summarize(result).numbers
    assert numbers["v"] == 1.0
    assert numbers["paper_protocol"] == {"paper": {"value": 11.0, "timings": []}}


def test_compute_once_computes_once_per_key() -> None:
    calls = []

    def make() -> int:
        calls.append(1)
        return len(calls)

    key = ("test_compute_once", object())
    assert protocols.compute_once(key, make) == (1, True)
    assert protocols.compute_once(key, make) == (1, False)
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------------
# Integration tier: a full run of the five experiments, reduced in size
# ------------------------------------------------------------------------------------------------

SIX = {
    "landscape": (1,),
    "optimizers": (1,),
    "overfitting": (1,),
    "dropout-map": (1, 2),
    "batch-norm": (2,),
}
SMALL = {
    depth_sweep: {"depths": (2, 3, 5), "steps": 40, "loss_grid": 5, "lanczos": 6},
    dropout_protocol: {"train_sizes": (100, 200), "steps": 60, "evals": 2},
    tuned_rates: {"grids": (("sgd", (0.01, 0.1)), ("adam", (1e-3, 3e-3)), ("rmsprop", (0.01,)))},
    bn_spectrum: {"num_probes": 1, "lanczos": 8, "grid_size": 50},
}


@pytest.mark.integration
@needs("matplotlib", "sklearn", "tqdm")
def test_full_run_records_both_measurements_and_discussions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jaxopt_lectures.__main__ import main
    from jaxopt_lectures.experiments import registry
    from jaxopt_lectures.experiments.lecture import (
        batch_norm,
        dropout_map,
        landscape,
        optimizers,
        overfitting,
        papers,
    )

    for module, changes in SMALL.items():
        monkeypatch.setattr(module, "FULL", dataclasses.replace(module.FULL, **changes))
    own = {
        e.name: e
        for e in (
            landscape.EXPERIMENT,
            optimizers.EXPERIMENT,
            overfitting.EXPERIMENT,
            dropout_map.EXPERIMENT,
            batch_norm.EXPERIMENT,
        )
    }
    for name, e in own.items():  # the experiment's own part at its quick settings

        def quick(config: Config, seed: int, e: Experiment[Any] = e) -> Any:
            return e.compute(dataclasses.replace(config, quick=True), seed)

        small = with_protocol(dataclasses.replace(e, compute=quick), papers.PROTOCOLS[name])
        monkeypatch.setitem(registry.EXPERIMENTS, name, small)
    code = main(["run", *SIX, "--out", str(tmp_path), "--no-progress", "--no-cache"])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    report = (tmp_path / "report.md").read_text()
    for name, indices in SIX.items():
        record = results["experiments"][name]["full"]["result"]
        assert record["status"] == "ok", record.get("error")
        assert len(record["figures"]) == 2
        assert all((tmp_path / f).stat().st_size > 10_000 for f in record["figures"])
        protocol = papers.PROTOCOLS[name]
        assert protocol.name in record["numbers"]["paper_protocol"]
        for i in indices:
            claim = record["claims"][i]
            (second,) = claim["also"]
            for m in (claim, second):
                assert m["rule"]
                assert isinstance(m["held"], bool)
                assert any(ch.isdigit() for ch in m["measured"])
            assert second["protocol"] == protocol.description
            if claim["held"] and second["held"]:
                assert claim["discussion"] == ""
            else:
                assert "\nVerdict: " in claim["discussion"]
                assert all(f"- {line}" in report for line in claim["discussion"].split("\n"))


def test_the_claims_page_is_generated_from_the_stored_full_run() -> None:
    from jaxopt_lectures.experiments import claims_page

    stored = json.loads(claims_page.STORED.read_text(encoding="utf-8"))
    page = claims_page.PAGE.read_text(encoding="utf-8")
    assert claims_page.replace_section(page, claims_page.render(stored)) == page, (
        "docs/lecture-claims.md is stale: python -m jaxopt_lectures.experiments.claims_page "
        "--results FOLDER-OF-A-FULL-RUN"
    )
    claims = [c for r in stored["experiments"].values() for c in r["claims"]]
    second = [c for c in claims if c["also"]]
    assert len(second) == 6  # the six claims measured under a paper's protocol
    for c in second:
        if not (c["held"] and c["also"][0]["held"]):
            assert all(f"- {line}" in page for line in c["discussion"].split("\n"))
    figures = claims_page.protocol_figures(stored)
    assert len(figures) == 4  # Li, Wilson, Srivastava (two experiments), Ghorbani
    for f in figures:
        assert (claims_page.FIGURES / Path(f).name).exists()


def test_replace_section_appends_then_replaces() -> None:
    from jaxopt_lectures.experiments.claims_page import BEGIN, END, replace_section

    first = replace_section("# Page\n", f"{BEGIN}\nold\n{END}\n")
    assert first == f"# Page\n\n{BEGIN}\nold\n{END}\n"
    assert replace_section(first, f"{BEGIN}\nnew\n{END}\n") == f"# Page\n\n{BEGIN}\nnew\n{END}\n"


def test_depth_sweep_direction_is_filter_normalized_per_layer_and_unit() -> None:
    settings = dataclasses.replace(depth_sweep.FULL, depths=(2, 5), width=6)
    params = depth_sweep.init(jax.random.key(0), 4, 3, settings)
    d = jax.jit(depth_sweep._direction)(jax.random.key(1), params)
    hidden, dh = np.asarray(params["hidden"]["w"]), np.asarray(d["hidden"]["w"])
    for layer in range(hidden.shape[0]):  # each unit's incoming weights, layer by layer
        np.testing.assert_allclose(
            np.linalg.norm(dh[layer], axis=0), np.linalg.norm(hidden[layer], axis=0), rtol=1e-5
        )
    for end in ("first", "last"):
        w, dw = np.asarray(params[end]["w"]), np.asarray(d[end]["w"])
        np.testing.assert_allclose(np.linalg.norm(dw, axis=0), np.linalg.norm(w, axis=0), rtol=1e-5)
        np.testing.assert_array_equal(d[end]["b"], 0.0)
    np.testing.assert_array_equal(d["hidden"]["b"], 0.0)
    assert not np.allclose(dh, hidden)
