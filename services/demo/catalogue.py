"""The demo centre's programmes, specialists' positions and session topics."""

from __future__ import annotations

from dataclasses import dataclass

ORIENTATION = "социально-педагогическая"

PSYCHOLOGIST = "педагог-психолог"
SPEECH_THERAPIST = "учитель-логопед"
SPECIAL_NEEDS_TEACHER = "учитель-дефектолог"
SOCIAL_PEDAGOGUE = "социальный педагог"

# The centre's eight specialists by position, in the order they are hired.
STAFF_POSITIONS = (
    PSYCHOLOGIST,
    PSYCHOLOGIST,
    PSYCHOLOGIST,
    SPEECH_THERAPIST,
    SPEECH_THERAPIST,
    SPEECH_THERAPIST,
    SPECIAL_NEEDS_TEACHER,
    SOCIAL_PEDAGOGUE,
)

WOMEN_NAMES = (
    "Ольга", "Татьяна", "Елена", "Наталья", "Ирина", "Светлана", "Марина",
    "Юлия", "Анна", "Екатерина", "Людмила", "Оксана", "Галина", "Евгения",
)  # fmt: skip
MEN_NAMES = ("Андрей", "Сергей", "Алексей", "Дмитрий", "Игорь")


@dataclass(frozen=True)
class Criterion:
    """One attestation criterion of a programme, scored from 0 to `max_score`."""

    code: str
    title: str
    max_score: int


@dataclass(frozen=True)
class ProgrammeSpec:
    """A correctional-developmental programme as the centre approved it."""

    code: str
    title: str
    position: str
    kind: str  # "group" or "individual": how its sessions are held
    min_age: int
    max_age: int
    years: int  # length of the programme in academic years
    criteria: tuple[Criterion, ...]
    high: str  # share of the maximum total for the high level, a decimal string
    medium: str
    duration_minutes: int
    sessions_per_week: int
    places: int  # pupils of one group, or of one journal's individual caseload
    topics: tuple[str, ...]


def _criteria(max_score: int, *items: tuple[str, str]) -> tuple[Criterion, ...]:
    return tuple(Criterion(code, title, max_score) for code, title in items)


PROGRAMMES = (
    ProgrammeSpec(
        code="ПСИ-01",
        title="«Ступеньки к школе»: развитие познавательных процессов у детей "
        "старшего дошкольного возраста",
        position=PSYCHOLOGIST,
        kind="group",
        min_age=5,
        max_age=6,
        years=2,
        criteria=_criteria(
            3,
            ("attention", "Произвольное внимание"),
            ("memory", "Зрительная и слуховая память"),
            ("thinking", "Наглядно-образное мышление"),
            ("motor", "Мелкая моторика и графические навыки"),
        ),
        high="0.75",
        medium="0.45",
        duration_minutes=30,
        sessions_per_week=3,
        places=19,
        topics=(
            "Диагностика готовности к занятиям",
            "Игры на развитие внимания: «Найди отличия»",
            "Запоминаем картинки: зрительная память",
            "Слушаем и повторяем: слуховая память",
            "Классификация предметов по признаку",
            "Графический диктант по клеткам",
            "Лабиринты и штриховка",
            "Закономерности: продолжи ряд",
            "Сравнение предметов: сходство и различие",
            "Итоговое занятие: путешествие в страну Знаний",
        ),
    ),
    ProgrammeSpec(
        code="ПСИ-02",
        title="«Учусь учиться»: коррекция и развитие познавательной деятельности "
        "младших школьников",
        position=PSYCHOLOGIST,
        kind="group",
        min_age=7,
        max_age=10,
        years=4,
        criteria=_criteria(
            5,
            ("attention", "Устойчивость и распределение внимания"),
            ("memory", "Смысловая память"),
            ("logic", "Словесно-логическое мышление"),
            ("self_control", "Самоконтроль в учебной деятельности"),
        ),
        high="0.8",
        medium="0.5",
        duration_minutes=40,
        sessions_per_week=2,
        places=19,
        topics=(
            "Вводное занятие: правила работы в группе",
            "Корректурная проба: учимся быть внимательными",
            "Приёмы смыслового запоминания",
            "Анализ и синтез: целое и части",
            "Обобщение и исключение лишнего",
            "Учимся планировать свои действия",
            "Самопроверка по образцу",
            "Логические задачи и аналогии",
            "Развитие пространственных представлений",
            "Итоговое занятие: что я умею",
        ),
    ),
    ProgrammeSpec(
        code="ПСИ-03",
        title="«Мир эмоций»: развитие эмоционально-волевой сферы и навыков общения "
        "детей 8–12 лет",
        position=PSYCHOLOGIST,
        kind="group",
        min_age=8,
        max_age=12,
        years=3,
        criteria=_criteria(
            5,
            ("emotions", "Распознавание и называние эмоций"),
            ("regulation", "Саморегуляция поведения"),
            ("communication", "Навыки общения со сверстниками"),
        ),
        high="0.8",
        medium="0.5",
        duration_minutes=40,
        sessions_per_week=2,
        places=19,
        topics=(
            "Знакомство: мое настроение сегодня",
            "Радость и грусть: как их узнать",
            "Гнев: что с ним делать",
            "Страх и как с ним справиться",
            "Учимся договариваться",
            "Дружба: умение слушать другого",
            "Дыхательные упражнения и релаксация",
            "Конфликт и пути его решения",
            "Я и мои чувства: рисуночная терапия",
            "Итоговое занятие: круг доверия",
        ),
    ),
    ProgrammeSpec(
        code="ПСИ-04",
        title="«Перекрёсток»: профилактика и коррекция нарушений поведения "
        "у подростков",
        position=PSYCHOLOGIST,
        kind="group",
        min_age=12,
        max_age=16,
        years=2,
        criteria=_criteria(
            10,
            ("self_esteem", "Адекватность самооценки"),
            ("stress", "Стрессоустойчивость"),
            ("conflict", "Конструктивное поведение в конфликте"),
            ("responsibility", "Ответственность за свои поступки"),
            ("goals", "Умение ставить цели"),
        ),
        high="0.7",
        medium="0.4",
        duration_minutes=45,
        sessions_per_week=2,
        places=19,
        topics=(
            "Кто я? Самопознание подростка",
            "Мои сильные стороны",
            "Стресс и способы совладания",
            "Конфликты со взрослыми: позиция и интерес",
            "Давление группы: умение сказать «нет»",
            "Ответственность и выбор",
            "Планирование: цели на полгода",
            "Тренинг уверенного поведения",
            "Итоговое занятие: письмо себе в будущее",
        ),
    ),
    ProgrammeSpec(
        code="ПСИ-05",
        title="«Шаг навстречу»: индивидуальная психологическая коррекция "
        "тревожности у детей и подростков",
        position=PSYCHOLOGIST,
        kind="individual",
        min_age=6,
        max_age=15,
        years=1,
        criteria=_criteria(
            5,
            ("anxiety", "Снижение уровня тревожности"),
            ("coping", "Владение приёмами саморегуляции"),
            ("adaptation", "Адаптация в детском коллективе"),
        ),
        high="0.8",
        medium="0.5",
        duration_minutes=40,
        sessions_per_week=1,
        places=20,
        topics=(
            "Первичная беседа и установление контакта",
            "Песочная терапия: мой мир",
            "Сказкотерапия: история про смелого героя",
            "Телесно-ориентированные упражнения",
            "Рисуем свой страх",
            "Дыхание и мышечная релаксация",
            "Ролевое проигрывание трудных ситуаций",
            "Итоговая беседа: что изменилось",
        ),
    ),
    ProgrammeSpec(
        code="ЛОГ-01",
        title="«Говорим правильно»: коррекция звукопроизношения у детей 5–7 лет",
        position=SPEECH_THERAPIST,
        kind="individual",
        min_age=5,
        max_age=7,
        years=2,
        criteria=_criteria(
            3,
            ("articulation", "Артикуляционная моторика"),
            ("sounds", "Звукопроизношение"),
            ("phonemic", "Фонематический слух"),
            ("prosody", "Просодическая сторона речи"),
        ),
        high="0.75",
        medium="0.45",
        duration_minutes=25,
        sessions_per_week=2,
        places=17,
        topics=(
            "Обследование звукопроизношения",
            "Артикуляционная гимнастика",
            "Постановка звука [С]",
            "Автоматизация звука [С] в слогах и словах",
            "Постановка звука [Ш]",
            "Дифференциация звуков [С]–[Ш]",
            "Постановка звука [Л]",
            "Автоматизация звука [Л] во фразах",
            "Постановка звука [Р]",
            "Автоматизация звука [Р] в связной речи",
            "Дифференциация звуков [Р]–[Л]",
        ),
    ),
    ProgrammeSpec(
        code="ЛОГ-02",
        title="«Грамотейка»: коррекция нарушений письменной речи у младших школьников",
        position=SPEECH_THERAPIST,
        kind="group",
        min_age=7,
        max_age=10,
        years=3,
        criteria=_criteria(
            5,
            ("phonemic", "Фонематический анализ и синтез"),
            ("reading", "Техника и понимание чтения"),
            ("writing", "Письмо под диктовку без специфических ошибок"),
            ("vocabulary", "Лексико-грамматический строй речи"),
        ),
        high="0.8",
        medium="0.5",
        duration_minutes=40,
        sessions_per_week=2,
        places=19,
        topics=(
            "Звуки и буквы: гласные первого и второго ряда",
            "Дифференциация звонких и глухих согласных",
            "Мягкость согласных на письме",
            "Звуко-буквенный анализ слов",
            "Слоговая структура слова",
            "Предложение: границы и схема",
            "Оптическая дисграфия: буквы б–д, п–т",
            "Словообразование: приставки и суффиксы",
            "Согласование слов в предложении",
            "Итоговый диктант",
        ),
    ),
    ProgrammeSpec(
        code="ЛОГ-03",
        title="«Речевая мозаика»: коррекция общего недоразвития речи у детей 5–8 лет",
        position=SPEECH_THERAPIST,
        kind="group",
        min_age=5,
        max_age=8,
        years=2,
        criteria=_criteria(
            3,
            ("lexicon", "Словарный запас"),
            ("grammar", "Грамматический строй речи"),
            ("coherent", "Связная речь"),
        ),
        high="0.75",
        medium="0.5",
        duration_minutes=30,
        sessions_per_week=3,
        places=19,
        topics=(
            "Лексическая тема «Осень»: существительные и прилагательные",
            "Лексическая тема «Овощи и фрукты»",
            "Множественное число существительных",
            "Предлоги в, на, под, над",
            "Составление рассказа по серии картинок",
            "Лексическая тема «Зима»: глаголы действия",
            "Согласование числительных с существительными",
            "Пересказ короткого текста",
            "Лексическая тема «Весна»: антонимы",
            "Итоговое занятие: рассказ по плану",
        ),
    ),
    ProgrammeSpec(
        code="ЛОГ-04",
        title="«Слово за слово»: индивидуальная коррекция нарушений чтения и письма "
        "у школьников",
        position=SPEECH_THERAPIST,
        kind="individual",
        min_age=7,
        max_age=12,
        years=2,
        criteria=_criteria(
            5,
            ("reading", "Навык чтения"),
            ("writing", "Навык письма"),
            ("analysis", "Языковой анализ"),
        ),
        high="0.8",
        medium="0.5",
        duration_minutes=40,
        sessions_per_week=1,
        places=16,
        topics=(
            "Обследование чтения и письма",
            "Слоговое чтение с опорой на схему",
            "Работа с деформированным текстом",
            "Списывание с самопроверкой",
            "Дифференциация смешиваемых букв",
            "Чтение и ответы на вопросы по тексту",
            "Словарный диктант",
            "Итоговая диагностика",
        ),
    ),
    ProgrammeSpec(
        code="ДЕФ-01",
        title="«Ступени развития»: коррекционно-развивающие занятия для детей "
        "с задержкой психического развития",
        position=SPECIAL_NEEDS_TEACHER,
        kind="individual",
        min_age=6,
        max_age=10,
        years=4,
        criteria=_criteria(
            3,
            ("sensory", "Сенсорные эталоны"),
            ("math", "Элементарные математические представления"),
            ("world", "Представления об окружающем мире"),
            ("thinking", "Мыслительные операции"),
            ("activity", "Регуляция учебной деятельности"),
        ),
        high="0.75",
        medium="0.45",
        duration_minutes=30,
        sessions_per_week=1,
        places=29,
        topics=(
            "Цвет, форма, величина",
            "Счёт в пределах десяти",
            "Состав числа",
            "Времена года и их признаки",
            "Части суток, дни недели",
            "Сравнение групп предметов",
            "Ориентировка на листе бумаги",
            "Решение простых задач с опорой на наглядность",
            "Классификация и обобщение",
            "Итоговое занятие: повторение изученного",
        ),
    ),
    ProgrammeSpec(
        code="ДЕФ-02",
        title="«Мир вокруг меня»: формирование представлений об окружающем "
        "у детей с ограниченными возможностями здоровья",
        position=SPECIAL_NEEDS_TEACHER,
        kind="group",
        min_age=5,
        max_age=9,
        years=3,
        criteria=_criteria(
            3,
            ("orientation", "Ориентировка в пространстве"),
            ("nature", "Представления о природе"),
            ("social", "Социально-бытовые навыки"),
        ),
        high="0.7",
        medium="0.4",
        duration_minutes=30,
        sessions_per_week=2,
        places=18,
        topics=(
            "Мой дом и моя семья",
            "Домашние и дикие животные",
            "Транспорт и правила дорожного движения",
            "Одежда по сезону",
            "Профессии людей",
            "Посуда и продукты",
            "Комнатные растения: уход",
            "Праздники и традиции",
            "Итоговое занятие: экскурсия по городу (по картинкам)",
        ),
    ),
    ProgrammeSpec(
        code="СОЦ-01",
        title="«Навигатор»: социальная адаптация и профессиональное "
        "самоопределение подростков",
        position=SOCIAL_PEDAGOGUE,
        kind="group",
        min_age=13,
        max_age=17,
        years=2,
        criteria=_criteria(
            10,
            ("rights", "Знание своих прав и обязанностей"),
            ("career", "Профессиональное самоопределение"),
            ("finance", "Финансовая грамотность"),
            ("safety", "Безопасное поведение"),
        ),
        high="0.7",
        medium="0.4",
        duration_minutes=45,
        sessions_per_week=1,
        places=19,
        topics=(
            "Права и обязанности несовершеннолетних",
            "Мир профессий: как выбрать свою",
            "Рынок труда и образования в нашем городе",
            "Личный бюджет подростка",
            "Безопасность в интернете",
            "Как пройти собеседование",
            "Волонтёрство и социальные проекты",
            "Итоговое занятие: мой профессиональный план",
        ),
    ),
    ProgrammeSpec(
        code="СОЦ-02",
        title="«Вместе»: развитие коммуникативных навыков и профилактика "
        "конфликтов в детском коллективе",
        position=SOCIAL_PEDAGOGUE,
        kind="group",
        min_age=10,
        max_age=14,
        years=2,
        criteria=_criteria(
            5,
            ("teamwork", "Умение работать в команде"),
            ("tolerance", "Толерантность и уважение к другим"),
            ("mediation", "Мирное разрешение споров"),
        ),
        high="0.8",
        medium="0.5",
        duration_minutes=40,
        sessions_per_week=1,
        places=19,
        topics=(
            "Правила нашей группы",
            "Игры на сплочение",
            "Такие разные, такие равные",
            "Буллинг: как распознать и остановить",
            "Школьная служба примирения",
            "Совместный проект группы",
            "Итоговое занятие: что мы узнали друг о друге",
        ),
    ),
)
