"""Support for polyvm's own tests and benchmarks (guest builds, fixtures)."""
