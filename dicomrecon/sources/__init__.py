"""PACS sources and destinations: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and DIMSE (C-FIND,
C-GET, C-MOVE, C-STORE).

Light on import: ``is_url`` and ``parse_url`` need nothing heavy; the network modules import
dicomweb-client or pynetdicom (the ``pacs`` extra) only when they are used.

* :mod:`.urls` parses and redacts URLs; :mod:`.credentials` reads secrets from the environment
  or ``~/.netrc``; :mod:`.retry` retries transient failures with a bounded backoff.
* :mod:`.dicomweb` and :mod:`.dimse` talk to servers; :mod:`.fetch` retrieves a study or series
  into a cache folder for the normal pipeline; :mod:`.send` sends a folder of instances;
  :mod:`.query` lists studies and series; :mod:`.cli` holds the command-line glue.
"""

from .urls import PacsURL, is_url, parse_url, redact

__all__ = ["PacsURL", "is_url", "parse_url", "redact"]
