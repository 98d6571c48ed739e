#!/bin/sh
# Builds the signed, notarized macOS installer package of the Klasblik agent. Runs on a Mac
# with Xcode's command line tools, Python 3.11 from python.org (it has Tk), and the school's
# or vendor's Apple Developer ID certificates in the keychain:
#   APP_ID="Developer ID Application: Example School (TEAMID1234)" \
#   INSTALLER_ID="Developer ID Installer: Example School (TEAMID1234)" \
#   NOTARY_PROFILE=klasblik deploy/agent/macos/build-pkg.sh
# (NOTARY_PROFILE: made once with `xcrun notarytool store-credentials klasblik ...`.)
# Output: build/agent/klasblik-agent-<version>.pkg. Not run on the development machine (Linux).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
version=$(python3.11 -c 'import sys; sys.path.insert(0, "'"$repo"'/agent/packaging"); import build_agent; print(build_agent.VERSION)')
out="$repo/build/agent"
python3.11 "$repo/agent/packaging/build_agent.py" freeze --build "$out"
frozen="$out/dist/klasblik-agent"

# Sign every binary inside out, then the program, with the hardened runtime and a fixed
# identifier: the PPPC profile names this identifier and team.
find "$frozen/_internal" -type f \( -name '*.so' -o -name '*.dylib' -o -perm -u+x \) -print0 |
  xargs -0 codesign --force --timestamp --options runtime --sign "$APP_ID"
codesign --force --timestamp --options runtime --identifier nl.klasblik.agent \
  --sign "$APP_ID" "$frozen/klasblik-agent"
codesign --verify --strict --verbose=2 "$frozen/klasblik-agent"

root="$out/pkgroot"
rm -rf "$root" && mkdir -p "$root/Library/Application Support/Klasblik" "$root/Library/LaunchAgents"
cp -R "$frozen" "$root/Library/Application Support/Klasblik/klasblik-agent"
cp "$here/nl.klasblik.agent.plist" "$root/Library/LaunchAgents/"
mkdir -p "$out/scripts" && cp "$here/postinstall" "$out/scripts/postinstall" && chmod 755 "$out/scripts/postinstall"
pkgbuild --root "$root" --identifier nl.klasblik.agent.pkg --version "$version" \
  --scripts "$out/scripts" --ownership recommended "$out/klasblik-agent-unsigned.pkg"
productsign --sign "$INSTALLER_ID" "$out/klasblik-agent-unsigned.pkg" "$out/klasblik-agent-$version.pkg"
xcrun notarytool submit "$out/klasblik-agent-$version.pkg" --keychain-profile "$NOTARY_PROFILE" --wait
xcrun stapler staple "$out/klasblik-agent-$version.pkg"
echo "built $out/klasblik-agent-$version.pkg"
