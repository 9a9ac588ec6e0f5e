"""Per-row explanations (``StandaloneModel.explain``, ``apfed predict --explain``): integrated gradients summed
per raw column, their completeness, and the commands."""

import csv

import numpy as np
import pytest
import torch
from conftest import run_cli

import apfed
from apfed import explain as explain_module
from apfed.data.arrays import from_arrays, from_parties
from apfed.errors import ApfedError
from apfed.explain import column_effects, integrated_gradients, top_reasons


def _churn(n: int = 500, seed: int = 0):
    """A bank (the active party: income, debt, a city, a noise column) and a shop; the label depends on income,
    debt and the city."""
    rng = np.random.default_rng(seed)
    income, debt, noise = rng.normal(50, 10, n), rng.normal(20, 5, n), rng.normal(size=n)
    city = rng.choice(["Paris", "Lyon", "Nice"], n)
    basket = rng.normal(size=n)
    score = (income - 50) / 10 - (debt - 20) / 5 + 1.5 * (city == "Nice") + basket
    ids = [f"c{i}" for i in range(n)]
    income[::25] = np.nan  # some missing values: the model fills them with the training mean
    bank = {"id": ids, "income": income, "debt": debt, "city": city, "noise": noise}
    bank["churn"] = np.where(score > 0.5, "yes", "no")
    return bank, {"id": ids, "basket": basket}


class _Frame:
    """What the model takes from a pandas DataFrame: ``columns`` and ``to_numpy()`` (no pandas here)."""

    def __init__(self, table: dict):
        self.columns = list(table)
        self.table = table

    def to_numpy(self):
        return np.array([np.asarray(v, dtype=object) for v in self.table.values()], dtype=object).T


@pytest.fixture(scope="module")
def churn_model():
    bank, shop = _churn()
    ds = from_parties({"bank": bank, "shop": shop}, label_column="churn", log=lambda *_: None)
    model = apfed.train(ds, 0, "apfed-c", epochs=12).model
    rows = {k: v[:60] for k, v in bank.items() if k != "churn"}
    return model, rows


def test_the_integral_is_exact_where_the_midpoint_rule_is():
    """A linear output's attributions are weight x (x - baseline); a quadratic's (sum of x²) from 0 are x²: the
    gradient along the path is linear in alpha, so the midpoint rule is exact."""
    x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
    w = torch.tensor([2.0, -1.0, 0.5])
    b = torch.tensor([0.5, 0.5, 0.5])
    linear = integrated_gradients(lambda z, _: z @ w, x, torch.zeros(2, dtype=torch.long), b, steps=3)
    np.testing.assert_allclose(linear, ((x - b) * w).numpy(), rtol=1e-6)
    square = integrated_gradients(lambda z, _: (z**2).sum(1), x, torch.zeros(2, dtype=torch.long), 0 * b, steps=4)
    np.testing.assert_allclose(square, (x**2).numpy(), rtol=1e-6)


def test_rows_are_explained_alike_in_any_chunking(monkeypatch):
    """Each row's gradient is its own, whatever rows share its pass (the sum's backward separates them)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, cls = torch.randn(37, 5), torch.randint(0, 3, (37,))

    def output(z, c):
        return net(z).softmax(1).gather(1, c[:, None])[:, 0]

    whole = integrated_gradients(output, x, cls, torch.zeros(5), steps=16)
    monkeypatch.setattr(explain_module, "ROWS_PER_PASS", 16 * 5)  # 5 rows per pass
    done = []
    chunked = integrated_gradients(output, x, cls, torch.zeros(5), steps=16, progress=done.append)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-7)
    assert done == [5] * 7 + [2]


def test_columns_group_their_features_and_reasons_rank_by_size():
    effects = column_effects(np.array([[1.0, 2.0, -4.0, 0.5]]), [("a", [0]), ("city", [1, 2]), ("b", [3])])
    np.testing.assert_allclose(effects, [[1.0, -2.0, 0.5]])
    names, top = top_reasons(effects, ["a", "city", "b"], 2)
    assert names.tolist() == [["city", "a"]] and top.tolist() == [[-2.0, 1.0]]
    assert top_reasons(effects, ["a", "city", "b"], 9)[0].shape == (1, 3)


def test_a_classifiers_effects_add_up_to_its_probability_against_the_average_rows(churn_model):
    model, rows = churn_model
    rows = _Frame(rows)
    e = model.explain(rows, steps=64)
    assert e.columns == ["income", "debt", "city", "noise"]
    proba = model.predict_proba(rows)
    assert e.explained.tolist() == model.predict(rows).tolist()
    picked = proba[np.arange(len(proba)), [model.class_names.index(c) for c in e.explained]]
    np.testing.assert_allclose(e.value, picked, rtol=1e-5)
    assert np.abs(e.gap).max() < 0.02 < np.abs(e.value - e.baseline).mean()
    coarse = model.explain(rows, steps=2)
    assert np.abs(coarse.gap).mean() > np.abs(e.gap).mean()
    # the columns the label depends on move the predictions; the noise column much less
    size = np.abs(e.effects).mean(0)
    assert size[3] < min(size[0], size[1]) / 3
    # the class asked for, on every row: for two classes, its effects are the other's with the sign changed
    yes, no = model.explain(rows, target="yes"), model.explain(rows, target="no")
    assert set(yes.explained) == {"yes"}
    np.testing.assert_allclose(yes.effects, -no.effects, atol=1e-5)
    np.testing.assert_allclose(yes.baseline + no.baseline, 1, rtol=1e-5)


def test_a_column_at_its_training_mean_or_missing_explains_nothing(churn_model):
    model, rows = churn_model
    mean = model.preprocessor.mean[model.columns.index("income")]
    income = np.r_[np.full(5, mean), np.full(5, np.nan), rows["income"][10:]]  # a missing value is the mean
    e = model.explain(_Frame({**rows, "income": income}))
    assert np.all(np.abs(e.effects[np.isnan(income) | (income == mean), 0]) < 1e-6)
    assert np.all(np.abs(e.effects[10:, 0][np.isfinite(income[10:])]) > 0)


def test_a_regressions_effects_are_in_the_targets_units():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 3)), rng.normal(size=(400, 2))
    y = 100 + 30 * a[:, 0] - 10 * a[:, 1] + 5 * b[:, 0]
    ds = from_arrays({"clinic": a, "lab": b}, y, task="regression")
    model = apfed.train(ds, 0, "local", epochs=20).model
    e = model.explain(a[:50], steps=64)
    assert e.explained is None and e.columns == ["clinic_0", "clinic_1", "clinic_2"]
    np.testing.assert_allclose(e.value, model.predict(a[:50]), rtol=1e-5)
    assert np.abs(e.gap).max() < 0.01 * np.abs(e.value - e.baseline).mean()
    assert 80 < e.baseline[0] < 120 and np.all(e.baseline == e.baseline[0])
    # a 1-SD rise of feature 0 moves the prediction by about +30, of feature 1 by about -10
    slope = np.polyfit(a[:50, 0], e.effects[:, 0], 1)[0]
    assert 20 < slope < 40 and np.polyfit(a[:50, 1], e.effects[:, 1], 1)[0] < -5
    with pytest.raises(ApfedError, match="regression model explains its value"):
        model.explain(a[:5], target="1")


def test_what_cannot_be_explained_is_one_clear_error(churn_model):
    model, rows = churn_model
    rows = _Frame(rows)
    with pytest.raises(ApfedError, match="'maybe' is no class of this model"):
        model.explain(rows, target="maybe")
    with pytest.raises(ApfedError, match="steps must be at least 1"):
        model.explain(rows, steps=0)
    images = from_arrays(
        {"top": np.random.rand(100, 1, 14, 28), "bottom": np.random.rand(100, 1, 14, 28)}, np.arange(100) % 2
    )
    image_model = apfed.train(images, 0, "local", epochs=1).model
    with pytest.raises(ApfedError, match="for tabular models"):
        image_model.explain(np.random.rand(3, 1, 14, 28))


def test_predict_writes_each_rows_reasons(tmp_path, churn_model):
    model, rows = churn_model
    path = tmp_path / "m.safetensors"
    model.save(path)
    with (tmp_path / "today.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(rows))
        w.writerows(zip(*rows.values(), strict=True))
    out = tmp_path / "p.csv"
    code, _, err = run_cli(
        "predict", "--model", path, "--input", tmp_path / "today.csv", "--explain", "4", "--output", out
    )
    assert code == 0, err
    assert "each with the 4 columns that moved it most" in err
    table = list(csv.DictReader(out.open()))
    assert list(table[0])[:5] == ["id", "prediction", "p_no", "p_yes", "explained"]
    assert list(table[0])[5:] == ["baseline"] + [f"{w}_{j}" for j in range(1, 5) for w in ("reason", "effect")]
    for r in table:
        assert r["explained"] == r["prediction"]
        assert {r[f"reason_{j}"] for j in range(1, 5)} == {"income", "debt", "city", "noise"}
        sizes = [abs(float(r[f"effect_{j}"])) for j in range(1, 5)]
        assert sizes == sorted(sizes, reverse=True)
        total = float(r["baseline"]) + sum(float(r[f"effect_{j}"]) for j in range(1, 5))
        assert abs(total - float(r[f"p_{r['explained']}"])) < 0.03
    # with a cut-off, the effects are on that class's probability, on every row
    code, _, err = run_cli(
        "predict",
        "--model",
        path,
        "--input",
        tmp_path / "today.csv",
        "--explain",
        "1",
        "--threshold",
        "yes=0.3",
        "--output",
        out,
    )
    assert code == 0, err
    table = list(csv.DictReader(out.open()))
    assert {r["explained"] for r in table} == {"yes"} and "reason_2" not in table[0]


def test_predict_explain_on_an_image_model_is_one_clear_line(tmp_path):
    images = from_arrays(
        {"top": np.random.rand(60, 1, 14, 28), "bottom": np.random.rand(60, 1, 14, 28)}, np.arange(60) % 2
    )
    path = apfed.train(images, 0, "local", epochs=1).model.save(tmp_path / "m.safetensors")
    np.savez(tmp_path / "x.npz", X=np.random.rand(4, 1, 14, 28))
    out = tmp_path / "p.csv"
    code, _, err = run_cli("predict", "--model", path, "--input", tmp_path / "x.npz", "--explain", "2", "--output", out)
    assert code == 2 and err.strip().splitlines() == [
        "error: --explain names columns, for tabular models (an image strip's pixels are no columns)"
    ]
    assert not out.exists()
