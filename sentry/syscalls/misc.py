"""misc syscalls."""
