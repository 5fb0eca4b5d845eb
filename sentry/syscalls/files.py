"""files syscalls."""
