"""Write two organizations' CSV files of the same patients for a regression: a clinic (the active party: age, sex,
BMI, blood pressure and, where the follow-up is known, the disease progression a year later) and a lab (six blood
serum measurements). Built from scikit-learn's copy of the diabetes data (Efron et al., 2004), as real offices would
hold it: their own row orders, the lab lacking some patients, a few values missing, sex written as text, follow-ups
not yet known. 40 patients are kept apart as new ones (the clinic's columns only), with their outcomes in a file of
their own for scoring later.

Usage: python examples/csv-regression/make_parties.py OUT_DIR
"""

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes

CLINIC = ("age", "sex", "bmi", "bp")
LAB = ("tc", "ldl", "hdl", "tch", "ltg", "glu")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    d = load_diabetes(scaled=False)
    X, y = d.data, d.target
    rng = np.random.default_rng(7)
    ids = np.array([f"p{i:04d}" for i in range(len(y))])
    order = rng.permutation(len(y))
    new, known = order[:40], order[40:]

    def clinic_row(i: int) -> list:
        age, sex, bmi, bp = X[i, :4]
        return [ids[i], int(age), "F" if sex == 2 else "M", "" if i % 37 == 0 else f"{bmi:.1f}", f"{bp:.0f}"]

    with (out / "clinic.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", *CLINIC, "progression"])
        for i in known:
            follow_up = "" if i % 11 == 0 else f"{y[i]:.0f}"  # a follow-up not in yet: a row with no label
            w.writerow([*clinic_row(i), follow_up])
    lab_rows = [i for i in known if i % 23 != 0]  # the lab never saw some of the clinic's patients
    with (out / "lab.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", *LAB])
        for i in rng.permutation(lab_rows):
            w.writerow([ids[i], *(f"{v:.4g}" for v in X[i, 4:])])
    with (out / "new_patients.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", *CLINIC])
        for i in new:
            w.writerow(clinic_row(i))
    with (out / "new_patients_progression.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "progression"])
        for i in new:
            w.writerow([ids[i], f"{y[i]:.0f}"])
    print(f"wrote clinic.csv ({len(known)} patients), lab.csv ({len(lab_rows)}) and 40 new patients to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/csv-regression"))
