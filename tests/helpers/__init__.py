"""Helpers of the test suite (importable as ``helpers``: the tests folder is on pytest's path)."""
