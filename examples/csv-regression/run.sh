#!/usr/bin/env bash
# A regression across two organizations: a clinic (the active party, with the outcome) and a lab, aligned by
# patient ID; compare the methods, train the clinic's standalone model, predict new patients from the clinic's
# columns alone (with the three columns that moved each prediction most) and score it once their outcomes are
# known. Run from a checkout with apfed installed (bash scripts/setup.sh):
#
#     bash examples/csv-regression/run.sh [OUT_DIR] [EPOCHS]
#
# OUT_DIR defaults to results/csv-regression, EPOCHS to the default preset's 60. examples/README.md explains each
# step and what the figures mean.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-results/csv-regression}"
epochs="${2:-60}"
python="${PYTHON:-python}"
apfed="${APFED:-apfed}"
parties=(--data "$out/clinic.csv" --data "$out/lab.csv" --id-column patient_id --label-column progression
    --task regression)

"$python" "$here/make_parties.py" "$out"
"$apfed" evaluate "${parties[@]}" --methods local,apfed-c,apfed-kd,tvfl --seeds 3 --epochs "$epochs" --out "$out/evaluate"
"$apfed" train "${parties[@]}" --method apfed-c --epochs "$epochs" --out "$out/clinic_model.safetensors"
"$apfed" info --model "$out/clinic_model.safetensors"
"$apfed" predict --model "$out/clinic_model.safetensors" --input "$out/new_patients.csv" --id-column patient_id \
    --explain 3 --output "$out/new_patients_predictions.csv"
"$apfed" score --model "$out/clinic_model.safetensors" --input "$out/new_patients.csv" --id-column patient_id \
    --labels "$out/new_patients_progression.csv" --label-column progression --importance --by sex
