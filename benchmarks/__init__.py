"""The benchmarks of the ULTIMUS network: run each as `python -m benchmarks.NAME` from the repository root."""
