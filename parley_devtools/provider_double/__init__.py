"""A scripted Symbl-compatible provider for end-to-end tests and benchmarks, run as its own process.

``python -m parley_devtools.provider_double --port 8790`` serves the contract subset Parley's pipeline uses
(token, Async API, Job API with webhooks, Conversation API reads) with job timing, failures and webhook loss
under the test's control, and logs every call so a test can check the insights gate with ``gate_violations``.
"""

from parley_devtools.provider_double.app import create_app, running
from parley_devtools.provider_double.config import DoubleConfig
from parley_devtools.provider_double.gate import gate_violations
from parley_devtools.provider_double.insights import FIXED_TRANSCRIPT

__all__ = ["FIXED_TRANSCRIPT", "DoubleConfig", "create_app", "gate_violations", "running"]
