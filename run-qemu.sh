#!/usr/bin/env bash
# QEMU aarch64 path: a real Linux kernel with kexec/kdump in the guest, the secure world on the
# host behind a virtio-serial port (see DESIGN.md, "Platforms"). Not built yet.
set -euo pipefail
echo "run-qemu.sh: the QEMU aarch64 path is not built yet (see DESIGN.md, Platforms)" >&2
exit 2
