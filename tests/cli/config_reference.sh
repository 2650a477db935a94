#!/usr/bin/env bash
# label: unit
# docs/config.md must be regenerated whenever a .proto comment changes.
set -euo pipefail
python3 "$2/docs/gen_config_reference.py" --check
