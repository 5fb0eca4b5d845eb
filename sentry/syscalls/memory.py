"""memory syscalls."""
