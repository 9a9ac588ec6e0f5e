#!/usr/bin/env bash
# A bank and a shop over two years, whose customers change with time (synthetic data): compare the methods on the
# latest rows (an out-of-time test) beside random validation rows from the earlier months, train the bank's
# standalone model, check the next quarter's new customers against its training rows (drift), and score it on them
# month by month once their outcomes are known. Run from a checkout with apfed installed (bash scripts/setup.sh):
#
#     bash examples/over-time/run.sh [OUT_DIR] [EPOCHS]
#
# OUT_DIR defaults to results/over-time, EPOCHS to the default preset's 60. examples/README.md explains each step
# and what the figures mean.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-results/over-time}"
epochs="${2:-60}"
python="${PYTHON:-python}"
apfed="${APFED:-apfed}"
parties=(--data "$out/bank.csv" --data "$out/shop.csv" --id-column customer_id --label-column churned
    --time-column opened)

"$python" "$here/make_parties.py" "$out"
"$apfed" evaluate "${parties[@]}" --methods local,apfed-c,apfed-kd,tvfl --seeds 3 --epochs "$epochs" \
    --set validation=0.2 --out "$out/evaluate"
"$apfed" train "${parties[@]}" --method apfed-kd --epochs "$epochs" --out "$out/bank_model.safetensors"
"$apfed" info --model "$out/bank_model.safetensors"
"$apfed" drift --model "$out/bank_model.safetensors" --input "$out/new_customers.csv" --id-column customer_id
"$apfed" score --model "$out/bank_model.safetensors" --input "$out/new_customers.csv" --id-column customer_id \
    --labels "$out/new_customers_churn.csv" --label-column churned --by opened --bins 3
