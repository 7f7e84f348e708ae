"""The coded finding of a run: ``[report] finding_code`` and ``finding_site``.

A code is written ``"SCHEME:VALUE"`` or ``"SCHEME:Keyword"`` with a coding scheme of
:data:`pydicom.sr.codedict.codes` (PS3.16): ``"SCT:27925004"`` or ``"SCT:Nodule"`` (SNOMED
CT "Nodule"), finding site ``"SCT:39607008"`` / ``"SCT:Lung"``. Unknown schemes or codes
are a :class:`~dicomml.errors.ConfigError` when the configuration is loaded.
"""

from __future__ import annotations

import functools

from dicomml.errors import ConfigError, did_you_mean

__all__ = ["parse_code", "run_finding"]


@functools.lru_cache(maxsize=None)
def _by_value(scheme: str) -> dict:
    from pydicom.sr.codedict import codes

    col = getattr(codes, scheme)
    return {getattr(col, kw).value: kw for kw in col.dir()}


def parse_code(text: str, what: str = "report.finding_code"):
    """``"SCHEME:VALUE"`` or ``"SCHEME:Keyword"`` → :class:`pydicom.sr.coding.Code`."""
    from pydicom.sr.codedict import codes

    scheme, sep, rest = str(text).partition(":")
    schemes = list(codes.schemes()) if hasattr(codes, "schemes") else ["SCT", "DCM"]
    if not sep or not rest.strip():
        raise ConfigError(f"{what} must be written SCHEME:CODE, e.g. \"SCT:27925004\" or "
                          f"\"SCT:Nodule\". Received: {text!r}")
    scheme, rest = scheme.strip().upper(), rest.strip()
    if scheme not in schemes:
        raise ConfigError(f"{what}: unknown coding scheme {scheme!r}; known: {schemes}. "
                          f"Received: {text!r}")
    col = getattr(codes, scheme)
    if rest in _by_value(scheme):
        return getattr(col, _by_value(scheme)[rest])
    try:
        return getattr(col, rest)
    except AttributeError:
        hint = did_you_mean(rest, col.dir(), n=3)
        raise ConfigError(f"{what}: {scheme} has no code or keyword {rest!r} in pydicom's "
                          f"PS3.16 dictionary.{hint} Received: {text!r}") from None


def run_finding(config, class_name: str):
    """``(finding, finding_site)`` for the SR of a study whose finding is ``class_name``:
    the configured codes of ``config`` (a :class:`~dicomml.train.config.RunConfig`, or None
    for none) for the positive class, else the class name and no site."""
    if config is None or class_name != (config.data.positive_class or ""):
        return class_name, None
    code, site = config.report.finding_code, config.report.finding_site
    return (parse_code(code) if code else class_name,
            parse_code(site, "report.finding_site") if site else None)
