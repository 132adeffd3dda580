#!/usr/bin/env bash
# The build job of one platform: `ci/build.sh PLATFORM` builds platforms/PLATFORM.yaml and leaves its artifacts in
# out/: PLATFORM.img.zst (the image, zstd), PLATFORM.img.bmap, PLATFORM.img.sha256 (of the uncompressed image),
# PLATFORM.img.manifest.json, and PLATFORM.env (this job's id for the release job's links).
#
# Blobs are cached in $BOOT2IPXE_CACHE (default .cache/boot2ipxe, inside the project so GitLab's cache: keeps
# it between pipelines). SCHEDULED_REBUILD empties it first: every blob then comes from its origin, so a daily
# rebuild notices an origin that no longer serves its pinned bytes. ZSTD_LEVEL sets the compression (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

platform=${1:-}
[ -n "$platform" ] || { echo "usage: ci/build.sh PLATFORM (one of platforms/*.yaml)" >&2; exit 2; }
spec=platforms/$platform.yaml
[ -f "$spec" ] || { echo "ci/build.sh: $spec: no such platform spec" >&2; exit 2; }

# shellcheck source=ci/setup.sh
. ci/setup.sh run fdisk mtools dosfstools e2fsprogs util-linux zstd

BOOT2IPXE_CACHE=$(realpath -m "${BOOT2IPXE_CACHE:-.cache/boot2ipxe}")
export BOOT2IPXE_CACHE
if [ -n "${SCHEDULED_REBUILD:-}" ]; then
    echo "SCHEDULED_REBUILD: starting from an empty blob cache, so every blob is fetched from its origin" >&2
    rm -rf "$BOOT2IPXE_CACHE"
fi

image=out/$platform.img
mkdir -p out
rm -f "$image" "$image".*
"$PY" -m boot2ipxe build "$spec" -o "$image"

# Level 10 (not 19): these images are mostly holes, so zstd spends its time reading zeros and level 19 saves
# a few percent at best; on a data-heavy image level 19 is ~15x slower (60 s against 4 s for 150 MB of binaries).
zstd -q -T0 "-${ZSTD_LEVEL:-10}" "$image" -o "$image.zst"
# zstd checksums what it compressed: test that the artifact decompresses to it before the image is dropped.
zstd -q -t "$image.zst"
expected=$(cut -d' ' -f1 "$image.sha256")
rm -f "$image"

# For the release job: links to this job's artifacts need its id (a dotenv report passes it on).
variable=BUILD_JOB_ID_$(printf '%s' "$platform" | tr 'a-z.-' 'A-Z__')
printf '%s=%s\n' "$variable" "${CI_JOB_ID:-}" >"out/$platform.env"

echo "$image.zst: $(du -h --apparent-size "$image.zst" | cut -f1), image sha256 $expected"
