"""Protocol files: schema, loading, and the runner that turns one into a report."""

from trustml.protocol.runner import RunOutcome, resolve_outdir, run_protocol
from trustml.protocol.schema import Protocol, load_protocol, load_yaml, parse_protocol
from trustml.protocol.verify import VerifyReport, verify_run

__all__ = [
    "Protocol",
    "RunOutcome",
    "load_protocol",
    "load_yaml",
    "parse_protocol",
    "resolve_outdir",
    "run_protocol",
    "starter_protocol",
    "verify_run",
    "VerifyReport",
]


def starter_protocol() -> str:
    """The commented starter protocol that ``trustml init`` writes."""
    from importlib import resources

    return resources.files("trustml.protocol").joinpath("starter.yaml").read_text(encoding="utf-8")
