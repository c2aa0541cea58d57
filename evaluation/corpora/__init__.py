"""Real meetings for measuring the engine: AMI action items, MRDA questions, QMSum summaries and topics.

The data lives beside the repository in ``../shared/data`` (read-only tuning material; each folder's README names
its source and licence). Each corpus is split here, once and for everyone, into a ``tune`` part that rules and
models may be fitted on and a ``check`` part held apart for reporting. The corpora's own test and dev splits, the
yardsticks, are not in ``../shared`` and nothing here reads them.
"""
