"""Imported only by the training script of tests/verify/sandbox/test_main_import.py: a stand-in for torch."""
