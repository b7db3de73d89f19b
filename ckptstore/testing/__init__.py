"""Test helpers shipped with ckptstore: conformance suites every backend must pass."""
