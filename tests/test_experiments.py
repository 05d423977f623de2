"""The main job on a --quick run: what results.json must show, the files it writes, and the
engine's promises (a vmap-ed sweep gives the numbers of separate runs, early stopping keeps the
best validation parameters).

The quick run happens once per test session (``quick_run`` in conftest.py, about 40 s on 2 quiet
cores) and every test that reads it is in the integration tier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chex
import jax
import numpy as np
import pytest
from conftest import needs

import jaxopt_lectures as jl
from jaxopt_lectures.__main__ import main
from jaxopt_lectures.compile_policy import (
    compiler_options,
    quick_compiles,
    quick_compiles_on,
)
from jaxopt_lectures.experiments import engine
from jaxopt_lectures.experiments.data import digits, make_dataset
from jaxopt_lectures.experiments.registry import EXPERIMENTS
from jaxopt_lectures.problems import PROBLEMS, quadratic

pytestmark = needs("matplotlib", "sklearn", "tqdm")  # the experiments extra


def record(results: dict[str, Any], name: str, mode: str = "quick") -> dict[str, Any]:
    slot = results["experiments"][name][mode]
    assert "failure" not in slot, slot["failure"]["error"]
    return slot["result"]


def numbers(results: dict[str, Any], name: str) -> dict[str, Any]:
    return record(results, name)["numbers"]


def as_float(value: Any) -> float:
    return float(value)  # results.json stores inf / nan as strings, which float() parses


# ------------------------------------------------------------------------------------------------
# What results.json shows
# ------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_newton_one_step_gradient_descent_many(quick_run: tuple[Path, dict]) -> None:
    n = numbers(quick_run[1], "newton")
    assert n["newton_steps_to_tolerance"] == 1
    assert n["newton_losses"][1] <= 1e-6 * n["start_loss"]
    assert as_float(n["gd_best_steps_to_tolerance"]) >= 20  # the best of the rate sweep
    assert as_float(n["gd_steps_to_tolerance"]) >= 20


@pytest.mark.integration
def test_sigmoid_gradients_vanish_toward_the_input_relu_do_not(
    quick_run: tuple[Path, dict],
) -> None:
    n = numbers(quick_run[1], "gradients")
    sigmoid = np.asarray(n["grad_norms"]["sigmoid"])  # (seeds, layers), layer 1 first
    relu = np.asarray(n["grad_norms"]["relu"])
    # Orders of magnitude from the output layer down to the first one, in every seed ...
    assert np.all(sigmoid[:, -1] / sigmoid[:, 0] > 1e3)
    # ... and falling layer after layer (sigma' <= 1/4 per layer).
    assert np.all(np.diff(np.log(sigmoid.mean(0))) > 0)
    # ReLU's stay within one order of magnitude.
    assert np.all(relu.max(1) / relu.min(1) < 10)
    assert n["sigmoid_derivative_max"] == pytest.approx(0.25, abs=1e-6)


@pytest.mark.integration
def test_overfitting_validation_minimum_well_before_the_end(quick_run: tuple[Path, dict]) -> None:
    n = numbers(quick_run[1], "overfitting")
    plain = n["without_dropout"]
    last_epoch = n["epochs"][-1]
    assert max(plain["best_epoch"]) <= 0.5 * last_epoch
    assert np.all(np.asarray(plain["final_val_loss"]) > np.asarray(plain["best_val_loss"]))
    # Training loss keeps falling after the validation minimum.
    assert np.all(
        np.asarray(plain["final_train_loss"]) < 0.5 * np.asarray(plain["train_loss_at_best"])
    )


@pytest.mark.integration
def test_dropout_lowers_the_final_gap_of_the_quick_run(quick_run: tuple[Path, dict]) -> None:
    """The quick run stops at epoch 40, mid-training: there dropout's gap is lower. The full run
    (150 epochs) measures the opposite at its last epoch and its report says so (the claim's
    ``held`` flag follows the numbers, which is checked too)."""
    n = numbers(quick_run[1], "overfitting")
    gap_plain = np.mean(n["without_dropout"]["final_gap"])
    gap_drop = np.mean(n["with_dropout"]["final_gap"])
    assert gap_drop < gap_plain
    claim = next(c for c in record(quick_run[1], "overfitting")["claims"] if "final" in c["claim"])
    assert claim["held"] == bool(gap_drop < gap_plain)


@pytest.mark.integration
def test_batch_norm_faster_and_tolerates_larger_rates(quick_run: tuple[Path, dict]) -> None:
    n = numbers(quick_run[1], "batch-norm")
    i1 = n["rates"].index(1.0)
    with_bn = as_float(n["mean_steps_to_target"]["with"][i1])
    without = as_float(n["mean_steps_to_target"]["without"][i1])
    assert with_bn < without
    assert as_float(n["best_steps_to_target"]["with"]) < as_float(
        n["best_steps_to_target"]["without"]
    )
    assert n["largest_rate_that_trains"]["with"] > n["largest_rate_that_trains"]["without"]


@pytest.mark.integration
def test_adam_and_rmsprop_beat_sgd_at_their_default_rates(quick_run: tuple[Path, dict]) -> None:
    per = numbers(quick_run[1], "optimizers")["per_optimizer"]
    assert per["adam"]["learning_rate"] == pytest.approx(1e-3)  # jl.adam's default
    assert per["rmsprop"]["learning_rate"] == pytest.approx(0.01)  # jl.rmsprop's default
    sgd = per["sgd (lr 0.01)"]
    for name in ("adam", "rmsprop"):
        assert np.mean(per[name]["best_val_loss"]) < np.mean(sgd["best_val_loss"])
        assert np.mean(per[name]["final_train_loss"]) < np.mean(sgd["final_train_loss"])


@pytest.mark.integration
def test_input_normalization_and_relu_numbers(quick_run: tuple[Path, dict]) -> None:
    n = numbers(quick_run[1], "input-normalization")
    assert n["largest_rate_that_trains"]["standardized"] > n["largest_rate_that_trains"]["raw"]
    r = numbers(quick_run[1], "relu-vs-sigmoid")
    relu, sigmoid = (
        np.asarray(r["epochs_to_target"]["relu"][0], float),
        np.asarray(r["epochs_to_target"]["sigmoid"][0], float),
    )
    assert relu.max() < sigmoid.min()


# ------------------------------------------------------------------------------------------------
# The files: results.json's metadata, figures, GIF, reports
# ------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_results_metadata_and_every_experiment(quick_run: tuple[Path, dict]) -> None:
    _out, results = quick_run
    assert results["schema"] == 2
    assert set(results["experiments"]) == set(EXPERIMENTS)
    for name, slots in results["experiments"].items():
        assert set(slots) == {"quick"}, name  # a quick run fills the quick slots only
        entry = record(results, name)
        assert entry["status"] == "ok", name
        assert entry["mode"] == "quick"
        assert entry["seed"] == 0
        assert len(entry["data_hash"]) == 16
        assert entry["version"] == jl.__version__
        env = entry["environment"]
        assert {"jax", "optax", "numpy", "python"} <= set(env["versions"])
        assert env["machine"]["cores"] >= 1
        assert env["machine"]["jax_backend"]
        assert entry["wall_time_s"] > 0
        assert entry["claims"]
        assert entry["headlines"]
        for claim in entry["claims"]:
            assert isinstance(claim["held"], bool)
            assert claim["measured"]
            assert claim["rule"]


@pytest.mark.integration
def test_figures_gif_and_reports(quick_run: tuple[Path, dict]) -> None:
    out, results = quick_run
    report = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for name in results["experiments"]:
        for figure in record(results, name)["figures"]:
            assert figure.startswith("quick/")  # a quick run's figures never replace a full run's
            data = (out / figure).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" or data[:6] == b"GIF89a", figure
            assert f"({figure})" in report
            assert f"src='{figure}'" in page
    from PIL import Image

    with Image.open(out / "quick" / "race.gif") as gif:
        assert getattr(gif, "n_frames", 1) >= 10  # animated formats only
    assert "| experiment | mode | claim | held? | measured |" in report
    leftovers = [p.name for p in [*out.iterdir(), *(out / "quick").iterdir()] if ".tmp-" in p.name]
    assert not leftovers


# ------------------------------------------------------------------------------------------------
# The CLI's robustness
# ------------------------------------------------------------------------------------------------


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in EXPERIMENTS)


def test_unknown_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no-such-thing", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown experiment 'no-such-thing'" in err
    assert "Traceback" not in err
    assert "gradients" in err


def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["run", "newton", "--quick", "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot write to the output folder" in err
    assert "--out" in err


def test_missing_optional_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jaxopt_lectures.experiments import _deps

    monkeypatch.setattr(_deps, "missing", lambda *a: ["matplotlib"])
    assert main(["run", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install 'jaxopt_lectures[experiments]'" in err
    with pytest.raises(_deps.MissingDependencyError, match=r"jaxopt_lectures\[experiments\]"):
        _deps.require("surely_not_an_installed_module")


def test_bad_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "data.npz"
    np.savez(bad, features=np.zeros((10, 2)))
    assert main(["run", "--quick", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "give an .npz file with arrays X" in capsys.readouterr().err


@pytest.mark.integration
def test_skip_finished_force_reruns(
    quick_run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(quick_run[0], out)
    before = record(json.loads((out / "results.json").read_text()), "newton")
    assert main(["run", "newton", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "already done, skipped" in capsys.readouterr().out
    kept = json.loads((out / "results.json").read_text())
    assert record(kept, "newton")["finished_at"] == before["finished_at"]
    assert set(kept["experiments"]) == set(EXPERIMENTS)  # the others are kept too
    # A full (non-quick) request does not reuse quick results; --force reruns.
    assert main(["run", "newton", "--quick", "--force", "--out", str(out), "--no-progress"]) == 0
    assert "already done" not in capsys.readouterr().out
    again = record(json.loads((out / "results.json").read_text()), "newton")
    assert again["wall_time_s"] != before["wall_time_s"]


# ------------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs() -> Any:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 2
    y = rng.integers(0, 3, size=240)
    X = centers[y] + rng.normal(size=(240, 8))
    return make_dataset(X, y, seed=1)


@pytest.mark.integration  # compiles MLP training several times (swept, then run by run)
def test_vmapped_sweep_equals_runs_one_by_one(blobs: Any) -> None:
    """Rates, seeds and even different optimizers as lanes of one vmap give the numbers of the
    runs done separately (not vmap-ed)."""
    model = engine.MLP((16,), batch_norm=True)
    tx_sgd, tx_adam = jl.sgd, jl.adam
    swept = engine.train(
        [engine.TrainRun(engine.select_optimizer([tx_sgd, tx_adam]), ((0, 0.1), (1, 0.01)), model)],
        blobs,
        epochs=3,
        seeds=(0, 1),
        batch_size=32,
    )[0]
    for seed_index, seed in enumerate((0, 1)):
        alone = engine.train(
            [engine.TrainRun(tx_sgd, (0.1,), model), engine.TrainRun(tx_adam, (0.01,), model)],
            blobs,
            epochs=3,
            seeds=(seed,),
            batch_size=32,
        )
        for lane, h in enumerate(alone):
            np.testing.assert_allclose(
                swept.train_loss[lane, seed_index], h.train_loss[0, 0], rtol=2e-5, atol=1e-6
            )
            np.testing.assert_allclose(
                swept.val_acc[lane, seed_index], h.val_acc[0, 0], rtol=0, atol=1e-6
            )
    problem = quadratic()
    sweep = engine.sweep_trajectories(jl.sgd, problem.loss, problem.x0, [0.01, 0.04], 30)
    for i, rate in enumerate((0.01, 0.04)):
        one = engine.run_trajectories(
            {"gd": engine.TrajectoryJob(problem.loss, problem.x0, jl.sgd(rate))}, 30
        )["gd"]
        np.testing.assert_allclose(sweep.points[i], one.points, rtol=1e-6, atol=1e-7)


@pytest.mark.integration  # compiles fit_mlps and a step-by-step MLP training loop
def test_fit_mlps_checkpoints_are_a_plain_training_loop(blobs: Any) -> None:
    """fit_mlps (rates and seeds as vmap lanes, parameters kept at checkpoints) against the same
    steps taken one by one with train_step; checkpoints must divide the steps."""
    import jax
    import jax.numpy as jnp

    model = engine.MLP((8,), batch_norm=True)
    timer = engine.Timer()
    (fitted,) = engine.fit_mlps(
        {"m": engine.TrainRun(jl.sgd, (0.1, 0.3), model)},
        blobs,
        steps=6,
        seeds=(0, 1),
        checkpoints=2,
        batch_size=16,
        timer=timer,
        short=True,
    ).values()
    assert fitted.val_acc.shape == fitted.train_loss.shape == (2, 2, 2)
    assert fitted.steps.tolist() == [3, 6]
    assert [t.what for t in timer.timings] == ["fit"]
    x, y = jnp.asarray(blobs.x_train), jnp.asarray(blobs.y_train)
    step = jax.jit(lambda c, b, lr: engine.train_step(model, jl.sgd(lr), c, b))
    for r, rate in enumerate((0.1, 0.3)):
        for s, seed in enumerate((0, 1)):
            key = jax.random.key(seed)
            carry = engine.init_carry(model, jl.sgd(rate), key, x.shape[1], blobs.num_classes)
            idx = np.random.default_rng(seed).integers(0, len(x), (2, 3, 16)).reshape(6, 16)
            lane = jax.tree.map(lambda a, r=r, s=s: a[r, s], fitted.params)
            for t, i in enumerate(idx):
                batch = (x[i], y[i], jax.random.fold_in(key, carry.step))
                carry, _ = step(carry, batch, jnp.float32(rate))
                if t % 3 == 2:  # a checkpoint
                    ours = jax.tree.map(lambda a, k=t // 3: a[k], lane)
                    chex.assert_trees_all_close(ours, carry.params, rtol=2e-5, atol=1e-6)
    with pytest.raises(ValueError, match="must divide"):
        engine.fit_mlps({}, blobs, steps=5, seeds=(0,), checkpoints=2)


def test_quick_compiles_give_the_same_numbers_and_both_times_are_recorded() -> None:
    import jax
    import jax.numpy as jnp

    @jax.jit
    def run(x: jax.Array) -> jax.Array:
        return jax.lax.scan(lambda c, _: (jnp.tanh(c) * 1.5 + 0.1, c.sum()), x, None, 50)[1]

    x = jnp.linspace(-1.0, 1.0, 8)
    timer = engine.Timer()
    slow = engine.timed("default", run, x, timer=timer, short=True)  # no quick run: defaults
    with quick_compiles():
        fast = engine.timed("level 0", run, x, timer=timer, short=True)
        compiled = engine.compile_timed("compiled only", run, x, timer=timer, short=True)
    np.testing.assert_allclose(fast, slow, rtol=1e-6)
    np.testing.assert_allclose(compiled(x), slow, rtol=1e-6)
    assert [t.what for t in timer.timings] == ["default", "level 0", "compiled only"]
    assert all(t.compile_s > 0 for t in timer.timings)
    assert timer.timings[-1].run_s == 0.0
    assert timer.timings[0].run_s > 0


def test_the_runner_sets_the_compile_policy_from_quick_for_the_compute_only() -> None:
    """A quick run's short programs compile quickly, a long program or a full run's keep XLA's
    defaults; the setting holds while ``compute`` runs, in its thread, and nowhere else."""
    from jaxopt_lectures.experiments.api import Config, Experiment
    from jaxopt_lectures.experiments.runner import compute_experiment

    seen: list[tuple[Any, Any]] = []

    def compute(config: Config, seed: int) -> Any:
        seen.append((compiler_options(short=True), compiler_options(short=False)))
        return None

    e = Experiment("e", "-", "-", "-", 0, compute, lambda r: (), lambda r: [], lambda r: None)
    for quick in (True, False):
        assert compute_experiment(e, Config(quick=quick), 0).error is None
    assert seen == [({"xla_backend_optimization_level": 0}, None), (None, None)]
    assert not quick_compiles_on()


def test_early_stopping_keeps_the_best_validation_parameters(blobs: Any) -> None:
    """The test numbers are those of the best-validation parameters (and of the last ones),
    measured again here on the kept checkpoints, outside the training program."""
    model = engine.MLP((64, 64))
    (h,) = engine.train(
        [engine.TrainRun(jl.adam, (0.05,), model)],
        blobs,
        epochs=30,
        seeds=(0,),
        batch_size=16,
        checkpoint_every=1,
    )
    best = int(h.best_index[0, 0])
    assert best == int(np.argmin(h.val_loss[0, 0]))
    assert h.val_loss[0, 0, best] <= h.val_loss[0, 0, -1]
    assert h.steps[best] == best * h.steps_per_epoch
    params, bn_state = h.checkpoints
    for index, loss, acc in (
        (best, h.test_loss, h.test_acc),
        (-1, h.final_test_loss, h.final_test_acc),
    ):
        p, b = (jax.tree.map(lambda a, i=index: a[0, 0, i], t) for t in (params, bn_state))
        logits = np.asarray(model.apply(p, b, blobs.x_test, training=False)[0], np.float64)
        log_z = np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))
        nll = log_z + logits.max(-1) - logits[np.arange(len(logits)), blobs.y_test]
        np.testing.assert_allclose(loss[0, 0], nll.mean(), rtol=1e-5, atol=1e-6)
        assert acc[0, 0] == pytest.approx(np.mean(logits.argmax(-1) == blobs.y_test))


def test_data_split_and_standardization() -> None:
    data = digits(seed=3)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (1078, 359, 360)
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-4)
    assert data.x_train.std(0).max() <= 1 + 1e-4  # floored std: constant pixels stay 0
    raw = digits(seed=3, standardize=False)
    assert raw.x_train.max() == 16
    assert data.describe().startswith("digits")
    with pytest.raises(ValueError, match="two classes"):
        make_dataset(np.zeros((10, 2)), np.zeros(10))


def test_problems_minima() -> None:
    import jax

    for make in PROBLEMS.values():
        p = make()
        # One program per problem: the loss and its gradient at the minimum, under jit.
        loss, grad = jax.jit(jax.value_and_grad(p.loss))(np.asarray(p.minimum, np.float32))
        assert float(loss) == pytest.approx(p.min_value, abs=1e-6)
        np.testing.assert_allclose(grad, 0, atol=1e-5)


@pytest.mark.integration
def test_user_data(tmp_path: Path) -> None:
    """--data FILE.npz replaces the digits (here for the experiment that uses data)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=400)
    X = rng.normal(size=(3, 12))[y] * 2 + rng.normal(size=(400, 12))
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    out = tmp_path / "out"
    code = main(
        ["run", "gradients", "--quick", "--data", str(tmp_path / "blobs.npz"), "--out", str(out)]
    )
    assert code == 0
    entry = record(json.loads((out / "results.json").read_text()), "gradients")
    assert "blobs.npz (400 examples)" in entry["data"]
    norms = np.asarray(entry["numbers"]["grad_norms"]["sigmoid"])
    assert norms.shape[1] == 11
