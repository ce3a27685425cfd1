"""Attribution (Captum) over ensemble members, with sanity and faithfulness checks."""

from trustml.explain.attribute import (
    METHODS,
    Attribution,
    CheckResult,
    attribute,
    completeness_check,
)

__all__ = ["METHODS", "Attribution", "CheckResult", "attribute", "completeness_check"]
