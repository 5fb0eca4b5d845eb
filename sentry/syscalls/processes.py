"""processes syscalls."""
