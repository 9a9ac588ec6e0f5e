#!/usr/bin/env bash
# Three labs' CSV files, aligned by form ID: compare the methods, measure what each lab could learn of the others'
# data from the run's messages (without and with DP noise), train lab A's standalone model, show what it
# takes, predict new forms from lab A's data alone, check they are like its training forms (drift), export it to
# ONNX and score it on the new forms' digits. Run
# from a checkout with apfed installed (bash scripts/setup.sh):
#
#     bash examples/csv-parties/run.sh [OUT_DIR] [EPOCHS]
#
# OUT_DIR defaults to results/csv-parties, EPOCHS to the default preset's 60. examples/README.md explains each
# step and what the figures mean.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-results/csv-parties}"
epochs="${2:-60}"
python="${PYTHON:-python}"
apfed="${APFED:-apfed}"
parties=(--data "$out/lab_a.csv" --data "$out/lab_b.csv" --data "$out/lab_c.csv" --id-column form_id --label-column digit)

"$python" "$here/make_parties.py" "$out"
"$apfed" evaluate "${parties[@]}" --methods local,apfed-c,apfed-kd,tvfl --seeds 1 --epochs "$epochs" --out "$out/evaluate"
"$apfed" leakage "${parties[@]}" --methods apfed-kd --epochs "$epochs" --out "$out/leakage"
"$apfed" leakage "${parties[@]}" --methods apfed-kd --epochs "$epochs" --dp-clip 1 --dp-noise 1 --out "$out/leakage-dp"
"$apfed" train "${parties[@]}" --method apfed-kd --epochs "$epochs" --out "$out/lab_a_model.safetensors"
"$apfed" info --model "$out/lab_a_model.safetensors"
"$apfed" predict --model "$out/lab_a_model.safetensors" --input "$out/new_forms.csv" --id-column form_id \
    --output "$out/new_forms_predictions.csv"
"$apfed" drift --model "$out/lab_a_model.safetensors" --input "$out/new_forms.csv" --id-column form_id
"$apfed" export --model "$out/lab_a_model.safetensors" --onnx "$out/lab_a_model.onnx"
"$apfed" score --model "$out/lab_a_model.safetensors" --input "$out/new_forms.csv" --id-column form_id \
    --labels "$out/new_forms_digits.csv" --label-column digit
