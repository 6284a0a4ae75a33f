#!/usr/bin/env bash
# The service set under a real arm64 Linux kernel in QEMU: real kexec, real kdump, a machine
# reset, the secure world on the host behind a virtio-serial port (see README.md, "QEMU
# guest"). The same as `cargo xtask qemu`; it installs and fetches what it needs.
#   ./run-qemu.sh                 cold boot, TPM, NIC, 3 kexecs, kdump, kexec back, reset
#   ./run-qemu.sh --kexecs 20     a longer run
#   ./run-qemu.sh --seed-bugs     also the Linux 5.13 build: bnxt fails on the 4th kexec
set -euo pipefail
cd "$(dirname "$0")"
exec cargo xtask qemu "$@"
