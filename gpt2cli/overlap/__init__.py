"""Test-set contamination: normalisation, n-gram hashing, the Bloom filter file, build and check."""
