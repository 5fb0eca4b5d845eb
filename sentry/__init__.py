"""The Sentry: runsc-py's application kernel (see DESIGN.md)."""
from sentry import _libs

_libs.install()
