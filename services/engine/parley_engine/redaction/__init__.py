"""PII redaction: the ``redaction`` option (``options``) and the Presidio-based redactor (``redactor``, heavy: import
it only where it runs)."""

from parley_engine.redaction.options import PiiType, RedactionOptions

__all__ = ["PiiType", "RedactionOptions"]
