#!/usr/bin/env bash
# The one-way layers (pyproject's [tool.importlinter]): daemon -> stages -> models. import-linter reads the package
# from disk, which an editable install does not provide, so it checks a throwaway non-editable copy.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HUMANSTYLE_VENV:-.venv}
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation --target "$copy" . 2>/dev/null
PYTHONPATH="$copy" "$VENV/bin/lint-imports" --no-cache
