"""Pieces of the pipeline benchmark (``python -m parley_devtools.bench_pipeline``).

``stacks`` starts the broker and the processes and measures their CPU and memory, ``observing`` watches what
the pipeline produces and waits like the Symbl SDK does, ``report`` turns the numbers into the results table.
"""
