#!/usr/bin/env bash
# Build dist/slipstream-VERSION-macos.dmg from dist/Slipstream.app (made by `pyinstaller
# packaging/slipstream.spec` on macOS). Runs on macOS only (hdiutil). Signing and notarisation
# run only when the secrets are set (see packaging/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
APP=dist/Slipstream.app
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
DMG=dist/slipstream-${VERSION}-macos.dmg
[ -d "$APP" ] || { echo "build_dmg: $APP not found: run pyinstaller packaging/slipstream.spec first" >&2; exit 1; }

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp \
    --entitlements packaging/macos/entitlements.plist --sign "$MACOS_SIGN_IDENTITY" "$APP"
  codesign --verify --deep --strict "$APP"
fi

"$APP/Contents/MacOS/slipstream" --version

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "Slipstream $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"

if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$DMG" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
  xcrun stapler staple "$DMG"
fi
echo "build_dmg: wrote $DMG"
