#!/usr/bin/env bash
# Render an HTML report in a real headless browser and save a screenshot (not a CI test).
# Usage: tools/render_report.sh [REPORT_HTML] [SCREENSHOT_PNG] [WIDTHxHEIGHT]
#   defaults: $OUTPUT_DIR/report/index.html (OUTPUT_DIR defaults to ./output), <html dir>/screenshot.png, 1200x3000
# Needs Debian's chromium: apt-get update && apt-get install -y chromium
set -euo pipefail
html="${1:-${OUTPUT_DIR:-./output}/report/index.html}"
[ -f "$html" ] || { echo "render_report.sh: $html not found; run mlperf-bnas report first" >&2; exit 2; }
html="$(cd "$(dirname "$html")" && pwd)/$(basename "$html")"
shot="${2:-$(dirname "$html")/screenshot.png}"
size="${3:-1200x3000}"
browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then browser="$candidate"; break; fi
done
[ -n "$browser" ] || { echo "render_report.sh: no chromium found; apt-get install -y chromium" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
args=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
      --disable-component-update --disable-sync --hide-scrollbars "--user-data-dir=$profile"
      "--window-size=${size/x/,}" "--screenshot=$shot" "file://$html")
"$browser" "${args[@]}" 2>"$profile/chromium.log" || { cat "$profile/chromium.log" >&2; exit 1; }
[ -s "$shot" ] || { echo "render_report.sh: no screenshot written" >&2; cat "$profile/chromium.log" >&2; exit 1; }
echo "screenshot: $shot"
