"""What the API fuzz run saw: per operation and role the cases sent, the statuses answered and
every failed check, summed up at the end of the session (and as JSON in $FUZZ_REPORT)."""

from __future__ import annotations

import json
import os
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Failures by kind, as the summary counts them (a Failure's class names its kind).
SERVER_ERROR_KINDS = frozenset({"ServerError", "AppException"})
SCHEMA_KINDS = frozenset({"JsonSchemaError", "MalformedJson", "MissingContentType"})
# Distinct failures printed per operation; the counts always cover all of them.
SHOWN_PER_OPERATION = 5
SHOWN_SLOWEST = 5


@dataclass
class Finding:
    """One failed check of one case."""

    role: str
    operation: str
    kind: str
    status: int | None
    title: str
    message: str
    reproduction: str

    @property
    def key(self) -> tuple[str, str, str]:
        """Findings with the same key are the same defect seen through several cases."""
        return (self.role, self.operation, f"{self.kind}: {self.title}: {self.first_line}")

    @property
    def first_line(self) -> str:
        return self.message.strip().splitlines()[0] if self.message.strip() else ""


@dataclass
class OperationRun:
    """One operation fuzzed as one role."""

    role: str
    operation: str
    # Whether some case must get past the id lookup: an operation with ids in its path, but
    # not an admin-only one fuzzed as a user (they answer 404 to non-admins by design).
    expects_real_rows: bool
    seconds: float = 0.0
    cases: int = 0
    cases_with_real_ids: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    real_id_statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    def record(self, status: int | None, findings: list[Finding], *, real_ids: bool) -> None:
        self.cases += 1
        self.findings.extend(findings)
        if status is None:
            return
        self.statuses[status] += 1
        if real_ids:
            self.cases_with_real_ids += 1
            self.real_id_statuses[status] += 1

    @property
    def server_error_cases(self) -> int:
        """Cases answered with a 5xx, or during which the app raised."""
        raised = sum(finding.kind == "AppException" for finding in self.findings)
        return raised + sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def reached_real_rows(self) -> bool:
        """Whether a case with real ids got past the lookup (any answer but 404 and 422)."""
        return any(status not in (404, 422) for status in self.real_id_statuses)

    def distinct_findings(self) -> list[Finding]:
        seen: dict[tuple[str, str, str], Finding] = {}
        for finding in self.findings:
            seen.setdefault(finding.key, finding)
        return list(seen.values())

    @property
    def failed(self) -> bool:
        return bool(self.findings) or (self.expects_real_rows and not self.reached_real_rows)

    def describe_failures(self) -> str:
        distinct = self.distinct_findings()
        lines = [f"{len(self.findings)} failed checks in {self.cases} cases of {self.operation} "
                 f"as {self.role} ({len(distinct)} distinct):"]
        if self.expects_real_rows and not self.reached_real_rows:
            lines.append(f"- no case with the ids of real rows got past the lookup "
                         f"({self.cases_with_real_ids} tried: {dict(self.real_id_statuses)})")
        for finding in distinct[:SHOWN_PER_OPERATION]:
            lines += [f"- [{finding.kind}] {finding.title} (status {finding.status})",
                      _indent(finding.message), _indent(finding.reproduction)]
        return "\n".join(lines)


def exception_finding(role: str, operation: str, exc: BaseException,
                      reproduction: str) -> Finding:
    """An exception the app raised instead of answering (in-process it reaches the caller)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return Finding(role, operation, "AppException", 500, f"{type(exc).__name__} at {where}",
                   str(exc)[:500], reproduction)


@dataclass
class Totals:
    operations: int
    runs: int
    cases: int
    server_errors: int
    schema_violations: int
    other_failures: int
    id_operations_beyond_404: int
    id_operations: int


class SessionReport:
    """Every OperationRun of the session."""

    def __init__(self) -> None:
        self.runs: list[OperationRun] = []

    def totals(self) -> Totals:
        findings = [finding for run in self.runs for finding in run.findings]
        schema = sum(finding.kind in SCHEMA_KINDS for finding in findings)
        # A 5xx fails two checks (server error, undocumented status): counted once, here.
        other = sum(finding.kind not in SCHEMA_KINDS | SERVER_ERROR_KINDS
                    and (finding.status or 500) < 500 for finding in findings)
        id_runs = [run for run in self.runs if run.expects_real_rows]
        return Totals(
            operations=len({run.operation for run in self.runs}), runs=len(self.runs),
            cases=sum(run.cases for run in self.runs),
            server_errors=sum(run.server_error_cases for run in self.runs),
            schema_violations=schema, other_failures=other,
            id_operations_beyond_404=sum(run.reached_real_rows for run in id_runs),
            id_operations=len(id_runs))

    def summary_lines(self) -> list[str]:
        totals = self.totals()
        lines = [
            f"operations: {totals.operations} ({totals.runs} operation x role runs), "
            f"cases: {totals.cases}",
            f"cases answered 5xx (or raising): {totals.server_errors}, "
            f"response schema violations: {totals.schema_violations}, "
            f"other failed checks (undocumented status, content type): "
            f"{totals.other_failures}",
            f"id-taking operation runs that reached a real row (admin-only ones as admin): "
            f"{totals.id_operations_beyond_404}/{totals.id_operations}"]
        slowest = sorted(self.runs, key=lambda run: run.seconds, reverse=True)[:SHOWN_SLOWEST]
        lines.append("slowest: " + ", ".join(
            f"{run.operation} as {run.role} {run.seconds:.1f} s ({run.cases} cases)"
            for run in slowest))
        for run in self.runs:
            if run.findings:
                lines += [f"  {run.role:5} {run.operation}: " + "; ".join(
                    f"{finding.kind} {finding.title} ({finding.status})"
                    for finding in run.distinct_findings()[:SHOWN_PER_OPERATION])]
        return lines

    def write_json(self, path: Path) -> None:
        data: dict[str, Any] = {"totals": asdict(self.totals()), "runs": [
            {"role": run.role, "operation": run.operation, "cases": run.cases,
             "seconds": round(run.seconds, 2),
             "statuses": dict(run.statuses), "reached_real_rows": run.reached_real_rows,
             "findings": [asdict(finding) for finding in run.distinct_findings()]}
            for run in self.runs]}
        path.write_text(json.dumps(data, indent=1))


def _indent(text: str) -> str:
    return "    " + text.strip().replace("\n", "\n    ")


SESSION = SessionReport()
REPORT_PATH = os.environ.get("FUZZ_REPORT")
