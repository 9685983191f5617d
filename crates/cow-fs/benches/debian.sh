#!/bin/bash
# Real-image comparison for issue 4: applying a Debian minbase root filesystem layer with
# stencil's apply_layer against GNU `tar -xzf`, `tar --zstd -xf` and `umoci unpack`, all
# in the same run, interleaved, on a tmpfs (the shared disks vary 3x between runs).
#
# Usage (as root): crates/cow-fs/benches/debian.sh [ROUNDS]   (default 9)
# Needs: debootstrap, zstd, umoci, bc. The root filesystem, layers and OCI image are cached
# under target/bench/. Prints the median seconds of each tool and the ratios the issue
# asks for.
set -euo pipefail
ROUNDS=${1:-9}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BENCH=$ROOT/target/bench
mkdir -p "$BENCH"
cd "$BENCH"
if [ ! -d rootfs ]; then
  debootstrap --variant=minbase bookworm rootfs.tmp http://deb.debian.org/debian
  mv rootfs.tmp rootfs
fi
[ -f debian.tar ] || tar --numeric-owner --xattrs -C rootfs -cf debian.tar .
[ -f debian.tar.gz ] || gzip -6 -k -c debian.tar > debian.tar.gz
[ -f debian.tar.zst ] || zstd -q -3 -f debian.tar -o debian.tar.zst
if [ ! -f oci/index.json ]; then
  # A one-layer OCI image of the same gzip layer, for umoci.
  python3 - <<'PY'
import hashlib, json, os, shutil
def sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()
os.makedirs('oci/blobs/sha256', exist_ok=True)
layer, diff_id = sha('debian.tar.gz'), sha('debian.tar')
shutil.copy('debian.tar.gz', f'oci/blobs/sha256/{layer}')
def blob(obj):
    data = json.dumps(obj).encode()
    digest = hashlib.sha256(data).hexdigest()
    open(f'oci/blobs/sha256/{digest}', 'wb').write(data)
    return digest, len(data)
config, config_size = blob({"architecture": "amd64", "os": "linux", "config": {},
                            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]}})
manifest, manifest_size = blob({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + config, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + layer, "size": os.path.getsize('debian.tar.gz')}]})
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + manifest,
    "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
    open('oci/index.json', 'w'))
json.dump({"imageLayoutVersion": "1.0.0"}, open('oci/oci-layout', 'w'))
PY
fi
(cd "$ROOT" && cargo build --quiet --release -p stencil-cow-fs --example apply)
APPLY=$ROOT/target/release/examples/apply
mkdir -p tmpfs
mountpoint -q tmpfs || mount -t tmpfs -o size=6g tmpfs tmpfs
cp -r oci debian.tar.gz debian.tar.zst tmpfs/
cd tmpfs
declare -A TIMES
run() {
  local name=$1; shift
  rm -rf out bundle; mkdir out
  local start end
  start=$(date +%s.%N); "$@" > /dev/null; end=$(date +%s.%N)
  TIMES[$name]+="$(echo "$end - $start" | bc) "
}
for _ in $(seq "$ROUNDS"); do
  run stencil-gzip "$APPLY" debian.tar.gz out
  run tar-xzf tar -xzf debian.tar.gz -C out
  run stencil-zstd "$APPLY" debian.tar.zst out
  run tar-zstd tar --zstd -xf debian.tar.zst -C out
  run umoci umoci unpack --image oci:latest bundle
done
rm -rf out bundle
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A MEDIAN
for name in "${!TIMES[@]}"; do
  MEDIAN[$name]=$(echo "${TIMES[$name]}" | median)
done
for name in $(printf '%s\n' "${!TIMES[@]}" | sort); do
  printf '%-13s median %6.3f s   runs: %s\n' "$name" "${MEDIAN[$name]}" "${TIMES[$name]}"
done
printf 'gzip: stencil / tar -xzf      = %.2f (issue: <= 1.3)\n' "$(echo "${MEDIAN[stencil-gzip]} / ${MEDIAN[tar-xzf]}" | bc -l)"
printf 'gzip: stencil / umoci unpack  = %.2f (issue: <= 0.6)\n' "$(echo "${MEDIAN[stencil-gzip]} / ${MEDIAN[umoci]}" | bc -l)"
printf 'zstd: stencil / tar --zstd -x = %.2f (issue: <= 1.1)\n' "$(echo "${MEDIAN[stencil-zstd]} / ${MEDIAN[tar-zstd]}" | bc -l)"
