#!/usr/bin/env bash
# Pack the Klasblik Chrome extension into a signed .crx for self-hosting, and print its id.
#
#   deploy/chromebook/pack.sh KEY.pem OUT_DIR [BASE_URL]
#
# KEY.pem is the school's private signing key: create it once with
#   openssl genrsa -out klasblik-extension.pem 2048
# and keep it safe: it fixes the extension id, and every update must be signed with it.
# With BASE_URL (where OUT_DIR will be served, https), updates.xml is written too.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
key=$(realpath "$1"); out=$(realpath -m "$2"); base=${3:-}
[ -r "$key" ] || { echo "cannot read the signing key $key" >&2; exit 1; }
chromium=${CHROMIUM:-$(command -v chromium || command -v google-chrome || true)}
[ -n "$chromium" ] || { echo "needs chromium or google-chrome to pack the extension" >&2; exit 1; }
src="$(cd "$(dirname "$0")/../../agent/chrome" && pwd)"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/klasblik" "$out"
# The shipped extension: no unit tests, no node file, no test hooks, and no development
# "key" (the id comes from KEY.pem).
(cd "$src" && cp -r manifest.json schema.json *.js *.html *.css icons _locales "$work/klasblik/")
python3 - "$work/klasblik/manifest.json" <<'PY'
import json, sys
path = sys.argv[1]
manifest = json.load(open(path))
manifest.pop("key", None)
json.dump(manifest, open(path, "w"), indent=2)
PY
"$chromium" --headless=new --no-sandbox --disable-gpu --pack-extension="$work/klasblik" \
  --pack-extension-key="$key" >/dev/null 2>&1 || true
[ -s "$work/klasblik.crx" ] || { echo "packing failed" >&2; exit 1; }
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$work/klasblik/manifest.json")
cp "$work/klasblik.crx" "$out/klasblik-$version.crx"
id=$(openssl rsa -in "$key" -pubout -outform DER 2>/dev/null | sha256sum | head -c 32 | tr '0-9a-f' 'a-p')
if [ -n "$base" ]; then
  cat > "$out/updates.xml" <<XML
<?xml version='1.0' encoding='UTF-8'?>
<gupdate xmlns='http://www.google.com/update2/response' protocol='2.0'>
  <app appid='$id'>
    <updatecheck codebase='${base%/}/klasblik-$version.crx' version='$version' />
  </app>
</gupdate>
XML
fi
echo "packed $out/klasblik-$version.crx"
echo "extension id: $id"
