"""The demo plan: the centre's history as API commands in a valid order."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.demo.catalogue import ORIENTATION, PROGRAMMES, ProgrammeSpec
from services.demo.history import Enrolment, History, Journal, Sizes, build_history
from services.demo.model import RANKS, Command, Plan, Ref
from services.demo.timetable import Attestation, Session, Timetable, build_timetable

API = "/api/v1"

# Programmes approved at the end of 2022/23 and those added for 2023/24.
APPROVALS = ((date(2023, 5, 30), 8), (date(2023, 8, 29), len(PROGRAMMES) - 8))

ENROLMENT_CANCELLATION_REASON = (
    "Приказ о зачислении издан ошибочно: родители (законные представители) "
    "отозвали заявление до начала занятий"
)
EXPULSION_CANCELLATION_REASONS = {
    "parents_request": "Родители (законные представители) отозвали заявление "
    "об отчислении",
    "other": "Основание для отчисления не подтвердилось",
}


@dataclass(frozen=True)
class _Document:
    """An order of the director: what it is about and when it was signed."""

    day: date
    series: str  # "у": orders on pupils, "од": on the centre's activity
    subject: str  # orders on one subject signed on one day are one order


class _OrderBook:
    """Numbers the director's orders in sequence within each calendar year."""

    def __init__(self) -> None:
        self._documents: set[_Document] = set()
        self._numbers: dict[_Document, str] = {}

    def register(self, document: _Document) -> _Document:
        self._documents.add(document)
        return document

    def assign(self, rng: random.Random) -> None:
        counters: dict[tuple[int, str], int] = {}
        for document in sorted(
            self._documents, key=lambda d: (d.day, d.series, d.subject)
        ):
            key = (document.day.year, document.series)
            if key not in counters:
                start = 30 * (document.day.month - 1) if document.series == "од" else 0
                counters[key] = start + rng.randint(1, 4)
            else:
                counters[key] += rng.randint(1, 3)
            self._numbers[document] = f"{counters[key]}-{document.series}"

    def order(self, document: _Document) -> dict[str, str]:
        return {"number": self._numbers[document], "date": document.day.isoformat()}


def build_plan(today: date, *, seed: int = 2023, scale: float = 1.0) -> Plan:
    """Build the demo centre's commands as of `today`, deterministically for `seed`."""
    rng = random.Random(seed)
    sizes = Sizes() if scale == 1 else Sizes.scaled(scale)
    history = build_history(today, rng, sizes)
    timetable = build_timetable(history, rng, sizes.sessions)
    builder = _CommandBuilder(history, timetable)
    commands = builder.build(rng)
    return Plan(today=today, seed=seed, scale=scale, commands=tuple(commands))


class _CommandBuilder:
    """Turns the history and the timetable into commands sorted by date."""

    def __init__(self, history: History, timetable: Timetable) -> None:
        self.history = history
        self.timetable = timetable
        self.orders = _OrderBook()

    def build(self, rng: random.Random) -> list[Command]:
        self._collect_orders()
        self.orders.assign(rng)
        commands = self._programmes() + self._journals()
        commands += self._pupils_and_orders()
        commands += [self._session(session) for session in self.timetable.sessions]
        commands += [self._attestation(item) for item in self.timetable.attestations]
        commands += self._closures()
        order = {id(command): index for index, command in enumerate(commands)}
        return sorted(commands, key=lambda c: (c.day, RANKS[c.kind], order[id(c)]))

    # Orders

    def _approval(self, index: int) -> _Document:
        day = APPROVALS[0][0] if index < APPROVALS[0][1] else APPROVALS[1][0]
        return _Document(day, "од", "approval")

    def _enrolment_order(self, enrolment: Enrolment) -> _Document:
        subject = "transfer" if enrolment.transferred_from else "enrolment"
        return _Document(enrolment.order_date, "у", subject)

    def _expulsion_order(self, enrolment: Enrolment) -> _Document:
        assert enrolment.expulsion_order_date is not None
        return _Document(enrolment.expulsion_order_date, "у", "expulsion")

    def _collect_orders(self) -> None:
        for index in range(len(PROGRAMMES)):
            self.orders.register(self._approval(index))
        for enrolment in self.history.enrolments:
            self.orders.register(self._enrolment_order(enrolment))
            if enrolment.expelled:
                self.orders.register(self._expulsion_order(enrolment))
            if enrolment.cancel_order_date is not None:
                self.orders.register(
                    _Document(enrolment.cancel_order_date, "у", enrolment.key)
                )
            for cancelled in enrolment.cancelled_expulsions:
                self.orders.register(_Document(cancelled.order_date, "у", "expulsion"))
                self.orders.register(
                    _Document(cancelled.cancel_order_date, "у", cancelled.key)
                )

    # Programmes and journals

    def _programmes(self) -> list[Command]:
        return [
            _programme_command(spec, self.orders.order(self._approval(index)))
            for index, spec in enumerate(PROGRAMMES)
        ]

    def _journals(self) -> list[Command]:
        return [_journal_command(journal) for journal in self.history.journals]

    def _closures(self) -> list[Command]:
        commands = []
        for key, closed_on in self.timetable.closures.items():
            commands.append(
                Command(
                    kind="closure",
                    path=API + "/journals/{journal}/closure",
                    params={"journal": Ref(key)},
                    body={"closed_on": closed_on.isoformat()},
                    day=closed_on,
                    lane=key,
                )
            )
        return commands

    # Pupils

    def _pupils_and_orders(self) -> list[Command]:
        by_pupil: dict[str, list[Command]] = {p.key: [] for p in self.history.pupils}
        for enrolment in self.history.enrolments:
            by_pupil[enrolment.pupil.key] += self._enrolment_commands(enrolment)
        commands = []
        for pupil in self.history.pupils:
            own = by_pupil[pupil.key]
            assert pupil.registered_on is not None
            commands.append(
                Command(
                    kind="pupil",
                    path=API + "/pupils",
                    body={
                        "surname": pupil.name.surname,
                        "name": pupil.name.name,
                        "patronymic": pupil.name.patronymic,
                        "birth_date": pupil.birth_date.isoformat(),
                        "opened_on": pupil.registered_on.isoformat(),
                    },
                    day=pupil.registered_on,
                    lane=pupil.key,
                    creates=pupil.key,
                )
            )
            commands += own
        return commands

    def _enrolment_commands(self, enrolment: Enrolment) -> list[Command]:
        pupil = enrolment.pupil.key
        order = self.orders.order(self._enrolment_order(enrolment))
        commands = [self._admission(enrolment, order)]
        for cancelled in enrolment.cancelled_expulsions:
            expulsion = {
                "programme_id": _programme_ref(enrolment.programme),
                "effective_date": cancelled.effective.isoformat(),
                "ground": cancelled.ground,
                "order": self.orders.order(
                    _Document(cancelled.order_date, "у", "expulsion")
                ),
            }
            if cancelled.ground == "other":
                expulsion["ground_detail"] = "Длительное лечение в стационаре"
            commands.append(
                _pupil_command(
                    "expulsion",
                    pupil,
                    "/expulsions",
                    expulsion,
                    cancelled.effective,
                    creates=cancelled.key,
                )
            )
            reason = EXPULSION_CANCELLATION_REASONS[cancelled.ground]
            commands.append(
                _pupil_command(
                    "expulsion_cancellation",
                    pupil,
                    "/expulsions/{expulsion}/cancellation",
                    {
                        "reason": reason,
                        "order": self.orders.order(
                            _Document(cancelled.cancel_order_date, "у", cancelled.key)
                        ),
                    },
                    cancelled.cancel_order_date,
                    expulsion=Ref(cancelled.key),
                )
            )
        if enrolment.cancel_order_date is not None:
            document = _Document(enrolment.cancel_order_date, "у", enrolment.key)
            commands.append(
                _pupil_command(
                    "enrolment_cancellation",
                    pupil,
                    "/enrolments/{enrolment}/cancellation",
                    {
                        "reason": ENROLMENT_CANCELLATION_REASON,
                        "order": self.orders.order(document),
                    },
                    enrolment.cancel_order_date,
                    enrolment=Ref(enrolment.key),
                )
            )
        if enrolment.expelled:
            commands.append(self._expulsion(enrolment))
        return commands

    def _admission(self, enrolment: Enrolment, order: dict[str, str]) -> Command:
        pupil = enrolment.pupil.key
        source = enrolment.transferred_from
        if source is None:
            body = {
                "programme_id": _programme_ref(enrolment.programme),
                "effective_date": enrolment.effective.isoformat(),
                "order": order,
            }
            kind, tail = "enrolment", "/enrolments"
        else:
            body = {
                "from_programme_id": _programme_ref(source.programme),
                "to_programme_id": _programme_ref(enrolment.programme),
                "effective_date": enrolment.effective.isoformat(),
                "order": order,
            }
            kind, tail = "transfer", "/transfers"
        return _pupil_command(
            kind, pupil, tail, body, enrolment.effective, creates=enrolment.key
        )

    def _expulsion(self, enrolment: Enrolment) -> Command:
        assert enrolment.last_day is not None and enrolment.ground is not None
        order = self.orders.order(self._expulsion_order(enrolment))
        body: dict[str, Any] = {
            "programme_id": _programme_ref(enrolment.programme),
            "effective_date": enrolment.last_day.isoformat(),
            "ground": enrolment.ground,
            "order": order,
        }
        if enrolment.ground_detail is not None:
            body["ground_detail"] = enrolment.ground_detail
        assert enrolment.expulsion_order_date is not None
        day = max(enrolment.last_day, enrolment.expulsion_order_date)
        return _pupil_command(
            "expulsion",
            enrolment.pupil.key,
            "/expulsions",
            body,
            day,
            creates="expulsion-of-" + enrolment.key,
        )

    # Journal entries

    def _session(self, session: Session) -> Command:
        programme = session.journal.programme
        return Command(
            kind="session",
            path=API + "/journals/{journal}/sessions",
            params={"journal": Ref(session.journal.key)},
            body={
                "date": session.day.isoformat(),
                "start_time": session.start_time,
                "duration_minutes": programme.duration_minutes,
                "topic": session.topic,
                "attendance": [
                    {"pupil_id": Ref(pupil.key), "status": status}
                    for pupil, status in session.attendance
                ],
            },
            day=session.day,
            lane=session.journal.key,
        )

    def _attestation(self, attestation: Attestation) -> Command:
        enrolment = attestation.enrolment
        body = {
            "programme_id": _programme_ref(enrolment.programme),
            "kind": attestation.kind,
            "date": attestation.day.isoformat(),
            "scores": attestation.scores,
            "protocol": {
                "number": attestation.protocol_number,
                "date": attestation.day.isoformat(),
            },
        }
        return _pupil_command(
            "attestation", enrolment.pupil.key, "/attestations", body, attestation.day
        )


def _programme_ref(spec: ProgrammeSpec) -> Ref:
    return Ref("programme-" + spec.code)


def _pupil_command(
    kind: str,
    pupil: str,
    tail: str,
    body: dict[str, Any],
    day: date,
    *,
    creates: str | None = None,
    **refs: Ref,
) -> Command:
    return Command(
        kind=kind,
        path=API + "/pupils/{pupil}" + tail,
        params={"pupil": Ref(pupil), **refs},
        body=body,
        day=day,
        lane=pupil,
        creates=creates,
    )


def _programme_command(spec: ProgrammeSpec, order: dict[str, str]) -> Command:
    return Command(
        kind="programme",
        path=API + "/programmes",
        body={
            "code": spec.code,
            "title": spec.title,
            "orientation": ORIENTATION,
            "approved_order": order,
            "criteria": [
                {"code": c.code, "title": c.title, "max_score": c.max_score}
                for c in spec.criteria
            ],
            "levels": {"high": float(spec.high), "medium": float(spec.medium)},
        },
        day=date.fromisoformat(order["date"]),
        lane="programme-" + spec.code,
        creates="programme-" + spec.code,
    )


def _journal_command(journal: Journal) -> Command:
    body: dict[str, Any] = {
        "programme_id": _programme_ref(journal.programme),
        "specialist": {
            "name": str(journal.specialist.name),
            "position": journal.specialist.position,
        },
        "academic_year": {
            "start": journal.year.start.isoformat(),
            "end": journal.year.end.isoformat(),
        },
        "kind": journal.kind,
    }
    if journal.group is not None:
        body["group"] = journal.group
    return Command(
        kind="journal",
        path=API + "/journals",
        body=body,
        day=journal.year.start,
        lane=journal.key,
        creates=journal.key,
    )
