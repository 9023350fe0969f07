"""Benchmarks of the export pipeline against the sandbox emulators.

They print figures and write ``benchmarks/results/<name>.json``; they assert nothing about time.
``python -m benchmarks`` runs every benchmark at its default size and prints one summary table.
"""
