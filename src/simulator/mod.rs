//! A protocol-faithful Freshteam API simulator for tests, benchmarks and the demo.
