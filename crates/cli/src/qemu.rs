//! Booting an image in QEMU with OVMF.
