"""The optimizer playground: its numbers are the library's, and the page works in a real browser.

Unit tier: a small page (two functions, two optimizers, short runs) is built; the precomputed
trajectories equal ``jl`` run step by step in Python (float32, before packing), and the ones read
back from the page's embedded data equal them to float16 precision.

Integration tier: the full page as ``python -m jaxopt_lectures playground`` writes it; every
(function, optimizer) at its default settings checked against ``jl`` the same way; then the page
is opened in headless Chromium (the system's ``/usr/bin/chromium`` and ``chromedriver``, driven by
Selenium; nothing is downloaded): sliders moved with the keyboard and by value, a start point
clicked, another function chosen; each time the drawn path must change and match the data, and
the console must stay free of errors. With ``JAXOPT_LECTURES_SCREENSHOT=PATH`` the browser test
also saves a screenshot there (``docs/figures/playground.png`` is made that way, see
docs/playground.md). Without Chromium the browser test skips, except under ``CI=true``, where it
fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_lectures.cli import main as cli_main
from jaxopt_lectures.playground import build, read_page, trajectory_from_page
from jaxopt_lectures.playground.grids import (
    NUM_STEPS,
    compute_grids,
    lr_values,
    methods,
    run_direct,
    start_points,
)
from jaxopt_lectures.playground.problems import himmelblau, playground_problems

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLOAT16_RTOL = 2.0**-10  # two half-ulps of float16's 11-bit significand


def _problems(*keys: str) -> list[Any]:
    return [p for p in playground_problems() if p.key in keys]


def _assert_page_matches(thetas_page: np.ndarray, thetas_ref: np.ndarray, where: str) -> None:
    """Equal to float16 rounding where the reference is within float16's range; beyond it (a
    diverging run) the page must hold inf or NaN, never a wrong finite number."""
    ref = np.asarray(thetas_ref, np.float64)
    page = np.asarray(thetas_page, np.float64)
    inside = np.isfinite(ref) & (np.abs(ref) < 6e4)
    # atol: float32 rounding differs between the compiled, vmapped program and the step-by-step
    # loop; near 0 that difference, not float16's, dominates.
    np.testing.assert_allclose(
        page[inside], ref[inside], rtol=FLOAT16_RTOL, atol=2e-5, err_msg=where
    )
    assert not np.isfinite(page[~inside]).any(), where


SMALL_STEPS = 20


@pytest.fixture(scope="module")
def small_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any], list[Any]]:
    """Two functions, two optimizers (one of them needs ``value_fn``), 2 x 2 start points."""
    problems = _problems("quadratic-20", "saddle")
    grids = compute_grids(problems, SMALL_STEPS, start_grid=2, method_keys=["adam", "newton"])
    path = build(tmp_path_factory.mktemp("playground"), problems=problems, grids=grids)
    return path, problems, grids


def _cases(grid: Any) -> list[tuple[list[int], tuple[int, int]]]:
    """The default settings at one start (checked through the page), and the largest value of
    every slider at another (checked on the float32 grid); the integration tier checks the
    defaults of every function and optimizer on the full page."""
    defaults = [h.default for h in grid.method.hypers]
    highest = [len(h.values) - 1 for h in grid.method.hypers]
    return [(defaults, (0, 1)), (highest, (1, 0))]


def test_grids_equal_jl_run_step_by_step(small_page: tuple[Path, list[Any], list[Any]]) -> None:
    """The vmapped, compiled grid is the library's numbers: the grid equals a plain Python loop
    over ``tx.update`` in float32, to the last digits. The hyperparameters are float32 arrays,
    as in the grid: from Python floats ``1 - b1`` is computed in float64 and rounded once, from
    an array ``b1`` is rounded first, and at b1 = 0.99 Adam's paths then differ by about 1e-4
    relative, below what the page stores (float16; the next test checks the floats' paths)."""
    for grid in small_page[2]:
        loss = grid.problem.problem.loss
        for idx, (ix, iy) in _cases(grid)[1:]:
            hypers = {
                h.name: jnp.float32(h.values[i])
                for h, i in zip(grid.method.hypers, idx, strict=True)
            }
            ref, ref_loss = run_direct(
                grid.method, loss, hypers, (grid.xs[ix], grid.ys[iy]), SMALL_STEPS
            )
            where = f"{grid.problem.key} {grid.method.key} {hypers}"
            np.testing.assert_allclose(
                grid.thetas[(*idx, iy, ix)], ref, rtol=2e-5, atol=1e-6, err_msg=where
            )
            np.testing.assert_allclose(
                grid.losses[(*idx, iy, ix)], ref_loss, rtol=1e-4, atol=1e-6, err_msg=where
            )


def test_page_data_equal_jl(small_page: tuple[Path, list[Any], list[Any]]) -> None:
    """Trajectories parsed out of the generated HTML equal ``jl`` run directly (to float16)."""
    path, problems, grids = small_page
    description, words = read_page(path)
    assert description["num_steps"] == SMALL_STEPS
    assert [p["key"] for p in description["problems"]] == [p.key for p in problems]
    for grid in grids:
        problem = grid.problem.problem
        entry = next(p for p in description["problems"] if p["key"] == grid.problem.key)
        page_grid = entry["methods"][grid.method.key]
        assert [h["name"] for h in page_grid["hypers"]] == [h.name for h in grid.method.hypers]
        for idx, (ix, iy) in _cases(grid)[:1]:
            start = (entry["starts"]["xs"][ix], entry["starts"]["ys"][iy])
            hypers = {h.name: h.values[i] for h, i in zip(grid.method.hypers, idx, strict=True)}
            ref, ref_loss = run_direct(grid.method, problem.loss, hypers, start, SMALL_STEPS)
            thetas, log_gap = trajectory_from_page(
                description, words, entry["key"], grid.method.key, idx, (ix, iy)
            )
            _assert_page_matches(thetas, ref, f"{entry['key']} {grid.method.key} {hypers}")
            gap = np.maximum(ref_loss.astype(np.float64) - problem.min_value, 1e-12)
            ok = np.isfinite(gap) & np.isfinite(log_gap)
            np.testing.assert_allclose(log_gap[ok], np.log10(gap[ok]), atol=0.02)


def test_page_is_self_contained(small_page: tuple[Path, list[Any], list[Any]]) -> None:
    """No network: nothing is fetched from anywhere (no src/href to http, no CDN, no imports)."""
    text = small_page[0].read_text(encoding="utf-8")
    for needle in ("http://", "https://", "<link ", " src=", "import(", "fetch("):
        assert needle not in text.replace('http://www.w3.org/2000/svg"', ""), needle
    for needle in ('<input type="range"', "<label for=", "DecompressionStream", "aria-valuetext"):
        assert needle in text, needle


def test_start_grid_passes_through_the_default_start() -> None:
    for p in playground_problems():
        xs, ys = start_points(p.problem.x0, p.problem.xlim, p.problem.ylim, 5)
        assert len(xs) == len(ys) == 5
        assert np.min(np.abs(xs - p.problem.x0[0])) < 1e-9
        assert np.min(np.abs(ys - p.problem.x0[1])) < 1e-9
        assert p.problem.xlim[0] < xs.min()
        assert xs.max() < p.problem.xlim[1]
        assert p.problem.ylim[0] < ys.min()
        assert ys.max() < p.problem.ylim[1]


def test_every_method_and_slider() -> None:
    keys = [m.key for m in methods("quadratic")]
    assert keys == [
        "sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta", "adam", "newton",
        "saddle_free_newton",
    ]  # fmt: skip
    for family in ("quadratic", "rosenbrock", "beale", "saddle", "himmelblau"):
        for m in methods(family):
            assert m.hypers[0].name == "learning_rate"
            for h in m.hypers:
                assert 0 <= h.default < len(h.values)
                assert list(h.values) == sorted(h.values)
            values = {h.name: h.values[h.default] for h in m.hypers}
            m.build(**values)  # the library accepts every default, as floats
            assert all("{" + h.name + "}" in m.call for h in m.hypers)


def test_himmelblau_has_four_minima() -> None:
    import jax

    problem = himmelblau()
    minima = next(p for p in playground_problems() if p.key == "himmelblau").minima
    assert len(minima) == 4
    value_and_grad = jax.jit(jax.value_and_grad(problem.loss))
    for m in minima:
        value, grad = value_and_grad(np.asarray(m, np.float32))
        assert float(value) < 1e-6
        assert float(np.linalg.norm(grad)) < 1e-3


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="method_keys"):
        compute_grids(_problems("saddle"), num_steps=2, start_grid=1, method_keys=["lbfgs"])
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        compute_grids(_problems("saddle"), num_steps=0, method_keys=["sgd"])
    with pytest.raises(ValueError, match="start_grid must be an int >= 1"):
        compute_grids(_problems("saddle"), start_grid=0, method_keys=["sgd"])
    with pytest.raises(ValueError, match="first"):
        lr_values(100.0, 10)
    not_a_page = tmp_path / "other.html"
    not_a_page.write_text("<html></html>")
    with pytest.raises(ValueError, match="not a playground page"):
        read_page(not_a_page)
    with pytest.raises(SystemExit):
        cli_main(["playground", "--steps", "0"])


# ------------------------------------------------------------------------------------------
# Writing the page: a temporary name of each writer's own, nothing left behind
# ------------------------------------------------------------------------------------------


def _write_small_page(path: Path) -> Path:
    from jaxopt_lectures.playground import page

    return page._write_page(path, {"problems": []}, page._Packer())


def test_concurrent_writers_of_one_page_do_not_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run writes the page into the same folder while the first is between writing its
    temporary file and moving it into place: both succeed (a shared temporary name made the
    first one's move fail with FileNotFoundError)."""
    target = tmp_path / "playground.html"
    real_replace = os.replace
    calls: list[str] = []

    def replace_after_another_writer(src: Any, dst: Any) -> None:
        calls.append(str(src))
        if len(calls) == 1:
            _write_small_page(target)  # the other run, in between
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_another_writer)
    assert _write_small_page(target) == target
    assert len(calls) == 2
    assert calls[0] != calls[1]
    read_page(target)
    assert [p.name for p in tmp_path.iterdir()] == ["playground.html"]


def test_a_failed_page_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        _write_small_page(tmp_path / "playground.html")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_page_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """A run killed while writing the page leaves its temporary file; the results store's
    cleanup at the start of the next run removes it (the name carries the dead process's id)."""
    import subprocess
    import sys

    from jaxopt_lectures.experiments.store import ResultsStore

    code = (
        "import os, sys; from pathlib import Path; from jaxopt_lectures.playground import page; "
        "os.replace = lambda *a: os._exit(9); "
        "page._write_page(Path(sys.argv[1]), {'problems': []}, page._Packer())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "playground.html")], env=env
    )
    assert killed.returncode == 9
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".playground.html.")
    ResultsStore(tmp_path, warn=print).prepare()
    assert not leftover.exists()


# ------------------------------------------------------------------------------------------
# Integration tier: the full page, the CLI, a real browser.
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("playground-full")
    assert cli_main(["playground", "--out", str(out)]) == 0
    return out / "playground.html"


@pytest.mark.integration
def test_full_page_size_and_numbers(full_page: Path) -> None:
    size = full_page.stat().st_size
    assert size < 10_000_000, f"{size / 1e6:.1f} MB: over the 10 MB budget"
    description, words = read_page(full_page)
    assert description["num_steps"] == NUM_STEPS
    problems = {p.key: p for p in playground_problems()}
    assert [p["key"] for p in description["problems"]] == list(problems)
    for entry in description["problems"]:
        problem = problems[entry["key"]]
        ix, iy = entry["default_start"]
        start = (entry["starts"]["xs"][ix], entry["starts"]["ys"][iy])
        assert np.allclose(start, problem.problem.x0)
        for method in methods(problem.problem.name):
            idx = [h.default for h in method.hypers]
            hypers = {h.name: h.values[h.default] for h in method.hypers}
            ref, _ = run_direct(method, problem.problem.loss, hypers, start, NUM_STEPS)
            thetas, _ = trajectory_from_page(
                description, words, entry["key"], method.key, idx, (ix, iy)
            )
            _assert_page_matches(thetas, ref, f"{entry['key']} {method.key} {hypers}")


def _browser() -> Any:
    """A headless Chromium from the system packages, or skip (fail under CI=true)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists() and not shutil.which(p)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the Python package selenium")
    if missing:
        message = (
            f"needs {', '.join(missing)} (apt-get install chromium chromium-driver; "
            "pip install -e '.[test]')"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver._playground_profile = profile  # removed with the driver
    return driver


def _wait(driver: Any, script: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def _console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


@pytest.mark.integration
def test_page_in_a_real_browser(full_page: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    description, words = read_page(full_page)
    driver = _browser()
    try:
        driver.get(full_page.resolve().as_uri())
        _wait(driver, "return window.playground && window.playground.ready")
        assert driver.find_element(By.ID, "status").text == ""
        state = driver.execute_script("return window.playground.state")
        assert state["methods"] == ["sgd", "momentum", "adam"]

        def path(method: str) -> str:
            return str(driver.execute_script(f"return window.playground.pathData('{method}')"))

        def check_data(problem: str, method: str) -> None:
            """What the page draws is the data: the JS-decoded trajectory equals Python's."""
            st = driver.execute_script("return window.playground.state")
            entry = next(p for p in description["problems"] if p["key"] == problem)
            idx = [st["hyper"][method][h["name"]] for h in entry["methods"][method]["hypers"]]
            js = driver.execute_script(f"return window.playground.trajectory('{method}')")
            thetas, _ = trajectory_from_page(
                description, words, problem, method, idx, tuple(st["start"])
            )
            np.testing.assert_array_equal(np.asarray(js["x"], np.float32), thetas[:, 0])
            np.testing.assert_array_equal(np.asarray(js["y"], np.float32), thetas[:, 1])

        def current_problem() -> str:
            return str(driver.execute_script("return window.playground.lastUpdate.problem"))

        assert current_problem() == "quadratic-20"
        check_data("quadratic-20", "adam")

        # 1. the keyboard: focus Adam's learning-rate slider, press the right arrow twice.
        before, value_before = (
            path("adam"),
            driver.find_element(By.ID, "adam-learning_rate-value").text,
        )
        slider = driver.find_element(By.ID, "adam-learning_rate")
        slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
        assert driver.find_element(By.ID, "adam-learning_rate-value").text != value_before
        assert (
            slider.get_attribute("aria-valuetext")
            == driver.find_element(By.ID, "adam-learning_rate-value").text
        )
        assert path("adam") != before, "the keyboard moved the slider but not the path"
        assert path("sgd")
        assert path("momentum")
        check_data("quadratic-20", "adam")
        eq = driver.find_element(By.ID, "eq-adam").text
        assert f"jl.adam({driver.find_element(By.ID, 'adam-learning_rate-value').text}" in eq
        assert "β₁ = 1 \N{MINUS SIGN} b1 = 0.1" in eq  # the lecture's weight of the new value

        # 2. a value change plus an input event: momentum's gamma to 0 (gradient descent).
        before = path("momentum")
        driver.execute_script(
            "const s = document.getElementById('momentum-momentum'); s.value = 0;"
            "s.dispatchEvent(new Event('input', {bubbles: true}));"
        )
        assert path("momentum") != before
        assert "= 0 · u" in driver.find_element(By.ID, "eq-momentum").text
        check_data("quadratic-20", "momentum")

        # 3. a click on the contour plot moves the start point (snapped to the grid).
        start, before = driver.execute_script("return window.playground.state.start"), path("sgd")
        overlay = driver.find_element(By.ID, "overlay")
        size = overlay.size
        driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true,"
            " clientX: r.left + r.width * 0.9, clientY: r.top + r.height * 0.1}));",
            overlay,
        )
        assert size["width"] > 300
        assert driver.execute_script("return window.playground.state.start") != start
        assert path("sgd") != before
        check_data("quadratic-20", "sgd")

        # 4. another function, another optimizer: saddle-free Newton on the saddle.
        Select(driver.find_element(By.ID, "problem")).select_by_value("saddle")
        driver.find_element(By.ID, "use-saddle_free_newton").click()
        assert current_problem() == "saddle"
        assert path("saddle_free_newton")
        check_data("saddle", "saddle_free_newton")
        before = path("saddle_free_newton")
        driver.find_element(By.ID, "saddle_free_newton-damping").send_keys(Keys.END)
        assert path("saddle_free_newton") != before

        # 5. the quadratic's conditioning and the step count are sliders too.
        Select(driver.find_element(By.ID, "problem")).select_by_value("quadratic")
        before = path("sgd")
        driver.find_element(By.ID, "kappa").send_keys(Keys.HOME)
        assert current_problem() == "quadratic-1"
        assert path("sgd") != before
        driver.find_element(By.ID, "kappa").send_keys(Keys.END)
        driver.find_element(By.ID, "steps").send_keys(*[Keys.ARROW_LEFT] * 60)
        assert path("sgd").count("L") == 40

        shot = os.environ.get("JAXOPT_LECTURES_SCREENSHOT")
        if shot:
            driver.get(full_page.resolve().as_uri())
            _wait(driver, "return window.playground && window.playground.ready")
            Path(shot).parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(shot)

        errors = _console_errors(driver)
        assert errors == [], errors
    finally:
        profile = getattr(driver, "_playground_profile", None)
        driver.quit()
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.integration
def test_the_main_job_writes_and_links_the_page(tmp_path: Path) -> None:
    """``run`` writes playground.html next to its report, and report.html links to it."""
    assert cli_main(["run", "newton", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "playground.html").stat().st_size > 1_000_000
    assert "href='playground.html'" in (tmp_path / "report.html").read_text(encoding="utf-8")
    read_page(tmp_path / "playground.html")
