"""Kernel image formats, each peeling one layer off to the kernel inside: bzImage, arm64/riscv
Image and EFI zboot, arm zImage, s390, Android boot.img."""
