#!/usr/bin/env bash
# Re-take docs/mlflow-ui-runs.png: the MLflow UI on this project's store, in headless Chromium (Debian's
# `chromium` package). Usage: docs/screenshot.sh [EXPERIMENT_NAME] (default rnnlab-surname)
set -euo pipefail
cd "$(dirname "$0")/.."
experiment=${1:-rnnlab-surname}
port=5099
id=$(python -c "import mlflow, sys; e = mlflow.MlflowClient('sqlite:///mlflow.db').get_experiment_by_name(sys.argv[1]); print(e.experiment_id if e else '')" "$experiment")
[[ -n $id ]] || { echo "no experiment $experiment in mlflow.db" >&2; exit 2; }
mlflow ui --backend-store-uri sqlite:///mlflow.db -h 127.0.0.1 -p "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=2400,800 \
  --virtual-time-budget=20000 --screenshot=docs/mlflow-ui-runs.png \
  "http://127.0.0.1:$port/#/experiments/$id/runs?searchFilter=tags.role%20%3D%20%27model%27&orderByKey=metrics.%60test_accuracy%60&orderByAsc=false"
