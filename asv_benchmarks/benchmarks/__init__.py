"""airspeed velocity benchmarks of fastem (see ``asv_benchmarks/README.md``)."""
