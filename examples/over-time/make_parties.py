"""Write a bank's and a shop's CSV files about the same customers over two years, whose behaviour changes with time,
and the next quarter's new customers. The data are synthetic (a known signal, drawn here), made to show what a model
meets after its training rows: a test on the latest rows, and new rows that have moved.

    python examples/over-time/make_parties.py OUT_DIR [--seed 0]

- ``bank.csv`` (the active party): ``customer_id``, ``opened`` (the day the account opened, 2023-01-01 to
  2024-12-31), ``income``, ``age``, ``plan`` (text: basic, plus, premium), ``balance`` and ``churned`` (yes/no a
  year later; empty for the customers of the last two months, whose year is not over);
- ``shop.csv`` (the passive party): ``customer_id``, ``spend`` and ``visits``, for 90 % of the bank's customers;
- ``new_customers.csv``: the bank's columns of 600 customers who open an account in the first quarter of 2025;
  ``new_customers_churn.csv`` holds whether they churned, known a year later.

What changes with time: incomes rise (about 6 % a year), more customers take the premium plan, and churn depends
less on the balance and more on the shop's spending as the months go (the bank's columns alone explain less of it).
A random test draw mixes the months and hides this; the latest rows do not.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

START = np.datetime64("2023-01-01")
DAYS = 731  # 2023 and 2024
PLANS = np.array(["basic", "plus", "premium"])


def customers(rng: np.random.Generator, n: int, first: int, last: int, gaps: float = 0.0) -> dict[str, np.ndarray]:
    """``n`` customers opening on days ``first`` to ``last`` after 2023-01-01, their bank and shop columns and churn."""
    day = np.sort(rng.integers(first, last + 1, n))
    t = day / DAYS  # 0 at the start of 2023, 1 at the end of 2024
    income = rng.lognormal(np.log(40_000) + 0.12 * t, 0.35)
    age = rng.normal(42, 12, n).clip(18, 90)
    premium = rng.random(n) < 0.15 + 0.2 * t
    plan = np.where(premium, "premium", np.where(rng.random(n) < 0.4, "plus", "basic"))
    balance = rng.normal(0, 1, n) + 0.8 * np.log(income / 40_000) + 0.5 * premium
    engaged = rng.normal(0, 1, n)  # what the shop sees: how much the customer still spends with it
    spend = np.exp(5 + 0.6 * engaged + rng.normal(0, 0.3, n))
    visits = rng.poisson(np.exp(1.5 + 0.5 * engaged))
    logit = -0.4 - (1.3 - 0.9 * t) * balance - 0.02 * (age - 42) - (0.4 + 1.6 * t) * engaged
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    income = np.where(rng.random(n) < gaps, np.nan, income)
    return {
        "opened": (START + day.astype("timedelta64[D]")).astype(str),
        "income": income,
        "age": age,
        "plan": plan,
        "balance": balance,
        "churned": np.where(churned, "yes", "no"),
        "spend": spend,
        "visits": visits,
    }


def write(path: Path, ids: np.ndarray, table: dict[str, np.ndarray], columns: list[str], rows: np.ndarray) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", *columns])
        for i in rows:
            w.writerow([ids[i], *(_text(table[c][i]) for c in columns)])


def _text(v) -> str:
    if isinstance(v, float | np.floating):
        return "" if np.isnan(v) else f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    n = 4000
    c = customers(rng, n, 0, DAYS - 1, gaps=0.01)
    ids = np.array([f"c{i:05d}" for i in rng.permutation(n)])
    c["churned"] = np.where(c["opened"] >= "2024-11-01", "", c["churned"])  # their year is not over
    write(a.out / "bank.csv", ids, c, ["opened", "income", "age", "plan", "balance", "churned"], rng.permutation(n))
    shop = np.sort(rng.choice(n, int(0.9 * n), replace=False))
    write(a.out / "shop.csv", ids, c, ["spend", "visits"], rng.permutation(shop))
    new = customers(rng, 600, DAYS, DAYS + 89, gaps=0.08)  # 2025, first quarter; the bank now misses more incomes
    new_ids = np.array([f"n{i:05d}" for i in range(600)])
    write(a.out / "new_customers.csv", new_ids, new, ["opened", "income", "age", "plan", "balance"], np.arange(600))
    write(a.out / "new_customers_churn.csv", new_ids, new, ["churned"], np.arange(600))
    print(
        f"wrote {a.out}: bank.csv {n} customers opened 2023-01-01 to 2024-12-31 ({int((c['churned'] == '').sum())} not"
        f" yet known), shop.csv {len(shop)}, new_customers.csv 600 (2025, first quarter)"
    )


if __name__ == "__main__":
    main()
