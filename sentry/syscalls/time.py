"""time syscalls."""
