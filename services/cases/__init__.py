"""Review cases: the case model, the ``CaseStore`` port and its stores, similar-case retrieval.

``services.cases.store_sqlite`` is the embedded default, ``services.cases.store_neo4j`` the
service mode; ``services.cases.similar`` holds the FAISS index of resolved cases. Import those
modules directly: this package imports neither the Neo4j driver nor FAISS.
"""

from services.cases.model import VERDICT_STATUS, Case, CaseStatus, Verdict, case_id_for
from services.cases.store import CaseStore

__all__ = ["VERDICT_STATUS", "Case", "CaseStatus", "CaseStore", "Verdict", "case_id_for"]
