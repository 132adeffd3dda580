#!/usr/bin/env bash
# The netboot job: `ci/netboot.sh PLATFORM` makes the image of one machine from the platform's base image.
#
#   MACHINE_NAME       the machine (its certificate's common name): letters, digits, '.', '_', '-'
#   BOOT2IPXE_SERVER   the boot server iPXE chains to, https://HOST[:PORT]
#   BOOT2IPXE_CA_CERT  the CA certificate (PEM) and
#   BOOT2IPXE_CA_KEY   its private key: GitLab File variables (the value is a path), or the PEM text itself
#   BOOT2IPXE_NTP      optional NTP server for the script (default: boot2ipxe's)
#
# Input: out/PLATFORM.img.zst from the platform's build job. Output, in out/netboot/: MACHINE.img.zst (the
# image: it holds the machine's private key, so the artifact is a secret), MACHINE.img.bmap, MACHINE.img.sha256,
# MACHINE.img.manifest.json, MACHINE.crt.pem (the client certificate) and MACHINE.fingerprint. The CA and the
# machine's key only ever live in a private temporary directory outside the project, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { # die MESSAGE [EXIT_CODE]
    echo "ci/netboot.sh: $1" >&2
    exit "${2:-1}"
}

platform=${1:-}
[ -n "$platform" ] || die "usage: ci/netboot.sh PLATFORM (with MACHINE_NAME, BOOT2IPXE_SERVER, BOOT2IPXE_CA_CERT, BOOT2IPXE_CA_KEY set)" 2
spec=platforms/$platform.yaml
[ -f "$spec" ] || die "$spec: no such platform spec" 2
base_zst=out/$platform.img.zst
[ -f "$base_zst" ] || die "$base_zst: no base image: this job takes it from the build:$platform job's artifacts" 2
machine=${MACHINE_NAME:-}
[ -n "$machine" ] || die "MACHINE_NAME is not set: run this job with the variable MACHINE_NAME (the machine to make an image for)" 2
server=${BOOT2IPXE_SERVER:-}
[ -n "$server" ] || die "BOOT2IPXE_SERVER is not set: add it as a CI/CD variable (the boot server, https://HOST[:PORT])" 2

# shellcheck source=ci/setup.sh
. ci/setup.sh run mtools zstd

umask 077
work=$(mktemp -d "${TMPDIR:-/tmp}/boot2ipxe-netboot.XXXXXX")
trap 'rm -rf "$work"' EXIT
pki=$work/pki
mkdir -m 700 "$pki"

# A File variable holds the path of a file with the value; a plain variable holds the PEM itself. Never print it.
ca_file() {
    local name=$1 target=$2 value
    value=${!name:-}
    [ -n "$value" ] || die "$name is not set: add the CA as a protected File variable (docs/gitlab-ci.md); protected variables only reach protected branches and tags" 2
    if [ "${value#-----BEGIN }" != "$value" ]; then
        printf '%s\n' "$value" >"$target"
    elif [ -f "$value" ]; then
        cp -- "$value" "$target"
    else
        die "$name: neither a file nor PEM text: make it a File variable whose value is the PEM file's content" 2
    fi
    chmod 600 "$target"
}
ca_file BOOT2IPXE_CA_CERT "$pki/ca.crt.pem"
ca_file BOOT2IPXE_CA_KEY "$pki/ca.key.pem"

"$PY" -m boot2ipxe certs issue "$pki" "$machine" >/dev/null

base=$work/$platform.img
zstd -q -d "$base_zst" -o "$base"
[ ! -f "out/$platform.img.sha256" ] || cp "out/$platform.img.sha256" "$base.sha256"

ntp=()
[ -z "${BOOT2IPXE_NTP:-}" ] || ntp=(--ntp "$BOOT2IPXE_NTP")
image=$work/$machine.img
# From inside $work, so the manifest names the images, not the temporary directory.
(cd "$work" && "$PY" -m boot2ipxe inject "$platform.img" -o "$machine.img" --platform "$root/$spec" \
    --server "$server" --pki pki --name "$machine" "${ntp[@]}" >/dev/null)

out=out/netboot
mkdir -p "$out"
rm -f "$out/$machine".*
# The .sha256 and .bmap of the uncompressed image, as `boot2ipxe build` writes them (one hole-aware pass).
"$PY" - "$image" "$out/$machine.img.bmap" >"$out/$machine.img.sha256" <<'EOF'
import sys
from pathlib import Path

from boot2ipxe.formats.sparse import hash_image

image = Path(sys.argv[1])
print(f"{hash_image(image, bmap=Path(sys.argv[2]))}  {image.name}")
EOF
zstd -q -T0 "-${ZSTD_LEVEL:-10}" "$image" -o "$out/$machine.img.zst"
zstd -q -t "$out/$machine.img.zst"
cp "$image.manifest.json" "$out/$machine.img.manifest.json"
cp "$pki/machines/$machine/client.crt.pem" "$out/$machine.crt.pem"

read -r sha1 sha256 < <("$PY" -c '
import json, sys
cert = json.load(open(sys.argv[1]))["client_certificate"]
print(cert["fingerprint_sha1"], cert["fingerprint_sha256"])
' "$out/$machine.img.manifest.json")
printf 'sha1 %s\nsha256 %s\n' "$sha1" "$sha256" >"$out/$machine.fingerprint"

echo "$out/$machine.img.zst: $machine on $platform, boot server $server"
echo "$machine: client certificate fingerprint $sha1 (nginx \$ssl_client_fingerprint), sha256 $sha256"
echo "the image holds $machine's private key: treat this job's artifacts as secrets"
