"""signals syscalls."""
