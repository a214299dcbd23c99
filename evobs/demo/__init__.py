"""The embedded AWS endpoint, the fault proxy and the demo workload (reused by the tests)."""
