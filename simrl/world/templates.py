"""Task templates: multi-hop ``qa``, WideSearch-style ``table`` and ``records`` tasks.

Each template walks functional relations from a start entity, so every question has exactly one
answer. ``records`` tasks are phrased for the world's record tools (the MCP record server): reads
whose answers span several result pages at the spec's ``page_size``, and writes verified on the final
record state (record ids: entity ids, and ``"member_of:{person}:{org}"`` / ``"ceo_of:{person}:{org}"``
for relation records).
"""

from __future__ import annotations

import datetime as dt

from simrl.world.index import Link
from simrl.world.schema import EntityType, QAGold, RecordsGold, StateCheck, TableColumn, TableGold
from simrl.world.tasks import Draft, TaskContext, Template, date_aliases, name_aliases, pages_needed

E = EntityType


def _difficulty(hops: int, needs_news: bool) -> str:
    level = 0 if hops == 1 else 1 if hops == 2 else 2
    return ("easy", "medium", "hard")[min(2, level + int(needs_news))]


def _qa(ctx: TaskContext, prompt: str, answer_id: str | None, path: list[Link | None], start: str,
        hops: int, *, answer: str | None = None, aliases: list[str] | None = None, news: bool = False) -> Draft | None:
    if any(link is None for link in path):
        return None
    text = answer if answer is not None else ctx.ix.name(answer_id)
    al = aliases if aliases is not None else (name_aliases(ctx.ix, answer_id) if answer_id else [])
    ids = [start] + [link.other for link in path]
    return Draft(prompt=prompt, gold=QAGold(answer=text, aliases=al), reference=text, entity_ids=ids,
                 edge_ids=[link.edge_id for link in path], hops=hops, difficulty=_difficulty(hops, news))


def _chain(ctx: TaskContext, start: str, relations: list[str]) -> list[Link | None]:
    """Follow functional relations (``"~rel"`` walks an edge backwards); None where a step is missing."""
    path: list[Link | None] = []
    here = start
    for rel in relations:
        link = ctx.ix.one_in(here, rel[1:]) if rel.startswith("~") else ctx.ix.one(here, rel)
        path.append(link)
        if link is None:
            break
        here = link.other
    return path


def _path_qa(name: str, start: E, relations: list[str], question: str, news: bool = False) -> Template:
    def make(ctx: TaskContext, nid: str) -> Draft | None:
        path = _chain(ctx, nid, relations)
        if not path or path[-1] is None:
            return None
        node = ctx.ix.node(nid)
        prompt = question.format(name=node["name"], kind=node.get("kind", ""))
        return _qa(ctx, prompt, path[-1].other, path, nid, len(relations), news=news)
    return Template(name, start, len(relations), make)


def _founding_year(ctx: TaskContext, nid: str) -> Draft | None:
    year = ctx.ix.node(nid)["founded"][:4]
    return _qa(ctx, f"In what year was {ctx.ix.name(nid)} founded?", None, [], nid, 1, answer=year, aliases=[])


def _acquisition_date(ctx: TaskContext, nid: str) -> Draft | None:
    link = ctx.ix.one_in(nid, "acquired")
    if link is None:
        return None
    date = link.attrs["date"]
    return _qa(ctx, f"On what date was {ctx.ix.name(nid)} acquired?", None, [link], nid, 1,
               answer=date, aliases=date_aliases(date), news=True)


def _ceo_at_acquisition(ctx: TaskContext, nid: str) -> Draft | None:
    link = ctx.ix.one_in(nid, "acquired")
    ceo = ctx.ix.ceo_at(link.other, link.attrs["date"]) if link else None
    if ceo is None:
        return None
    prompt = (f"Who was the chief executive of the company that acquired {ctx.ix.name(nid)} "
              "at the time of the acquisition?")
    return _qa(ctx, prompt, ceo.other, [link, ceo], nid, 2, news=True)


QA_TEMPLATES = [
    _path_qa("birth_city", E.person, ["born_in"], "In which city was {name} born?"),
    _path_qa("headquarters_city", E.organization, ["headquartered_in"], "In which city is {name} headquartered?"),
    Template("founding_year", E.organization, 1, _founding_year),
    _path_qa("maker", E.product, ["produced_by"], "Which company makes {name}?"),
    _path_qa("creator", E.creative_work, ["created_by"], "Who created the {kind} {name}?"),
    _path_qa("event_city", E.event, ["held_in"], "In which city was {name} held?"),
    _path_qa("acquirer", E.organization, ["~acquired"], "Which company acquired {name}?"),
    Template("acquisition_date", E.organization, 1, _acquisition_date),
    _path_qa("birth_country", E.person, ["born_in", "located_in"], "In which country was {name} born?"),
    _path_qa("maker_city", E.product, ["produced_by", "headquartered_in"],
             "In which city is the company that makes {name} headquartered?"),
    _path_qa("creator_birth_city", E.creative_work, ["created_by", "born_in"],
             "In which city was the creator of the {kind} {name} born?"),
    _path_qa("event_country", E.event, ["held_in", "located_in"], "In which country did {name} take place?"),
    Template("ceo_at_acquisition", E.organization, 2, _ceo_at_acquisition),
    _path_qa("maker_country", E.product, ["produced_by", "headquartered_in", "located_in"],
             "In which country is the company that makes {name} headquartered?"),
    _path_qa("creator_birth_country", E.creative_work, ["created_by", "born_in", "located_in"],
             "In which country was the creator of the {kind} {name} born?"),
    _path_qa("founder_birth_country", E.organization, ["founded_by", "born_in", "located_in"],
             "In which country was the founder of {name} born?"),
    _path_qa("publisher_country", E.creative_work, ["published_by", "headquartered_in", "located_in"],
             "In which country is the publisher of the {kind} {name} headquartered?"),
    _path_qa("maker_founder_birth_country", E.product, ["produced_by", "founded_by", "born_in", "located_in"],
             "In which country was the founder of the company that makes {name} born?"),
    _path_qa("maker_acquirer_country", E.product, ["produced_by", "~acquired", "headquartered_in", "located_in"],
             "In which country is the company that acquired the maker of {name} headquartered?", news=True),
    _path_qa("organizer_founder_birth_country", E.event, ["organized_by", "founded_by", "born_in", "located_in"],
             "In which country was the founder of the organizer of {name} born?"),
]


# -- table tasks (WideSearch layout) ----------------------------------------------------------------
_NAME = TableColumn(name="name", preprocess="norm_str", metric="alias_match")


def _date_col(name: str) -> TableColumn:
    return TableColumn(name=name, preprocess="norm_date", metric="date_near", criterion=31)


def _table(ctx: TaskContext, prompt: str, start: str, rows: list[tuple[str, dict[str, str], list[str]]],
           columns: list[TableColumn], news: bool = False) -> Draft | None:
    """``rows``: (row entity id, cells, edge ids)."""
    bounds = ctx.spec.tasks.table_rows
    if not bounds.min <= len(rows) <= bounds.max:
        return None
    header = ", ".join(c.name for c in columns)
    aliases = {"name": {cells["name"]: name_aliases(ctx.ix, rid) for rid, cells, _ in rows
                        if name_aliases(ctx.ix, rid)}}
    gold = TableGold(columns=columns, unique_columns=["name"], rows=[cells for _, cells, _ in rows],
                     aliases={k: v for k, v in aliases.items() if v})
    edges = [e for _, _, es in rows for e in es]
    return Draft(prompt=f"{prompt} Answer with a markdown table with the columns: {header}. Dates as YYYY-MM-DD.",
                 gold=gold, reference=f"{len(rows)} rows: " + "; ".join(c["name"] for _, c, _ in rows),
                 entity_ids=[start] + [r for r, _, _ in rows], edge_ids=edges, hops=2,
                 difficulty="hard" if news or len(rows) > 10 else "medium")


def _orgs_in_city(ctx: TaskContext, city: str) -> Draft | None:
    rows = []
    for link in ctx.ix.inn(city, "headquartered_in"):
        n = ctx.ix.node(link.other)
        rows.append((link.other, {"name": n["name"], "founded": n["founded"], "industry": n["industry"],
                                  "employees": str(n["employees"])}, [link.edge_id]))
    cols = [_NAME, _date_col("founded"), TableColumn(name="industry"),
            TableColumn(name="employees", preprocess="extract_number", metric="number_near", criterion=0.1)]
    return _table(ctx, f"List every organization headquartered in {ctx.ix.name(city)}.", city, rows, cols)


def _products_of(ctx: TaskContext, org: str) -> Draft | None:
    rows = []
    for link in ctx.ix.inn(org, "produced_by"):
        n = ctx.ix.node(link.other)
        rows.append((link.other, {"name": n["name"], "released": n["released"], "category": n["category"],
                                  "price": f"{n['price']:.2f}"}, [link.edge_id]))
    cols = [_NAME, _date_col("released"), TableColumn(name="category"),
            TableColumn(name="price", preprocess="extract_number", metric="number_near", criterion=0.05)]
    return _table(ctx, f"List every product made by {ctx.ix.name(org)}.", org, rows, cols)


def _people_born_in(ctx: TaskContext, city: str) -> Draft | None:
    rows = []
    for link in ctx.ix.inn(city, "born_in"):
        n = ctx.ix.node(link.other)
        rows.append((link.other, {"name": n["name"], "born": n["born"], "occupation": n["occupation"]},
                     [link.edge_id]))
    cols = [_NAME, _date_col("born"), TableColumn(name="occupation")]
    return _table(ctx, f"List every person born in {ctx.ix.name(city)}.", city, rows, cols)


def _ceos_of(ctx: TaskContext, org: str) -> Draft | None:
    links = ctx.ix.inn(org, "ceo_of")
    if len(links) < 2:
        return None
    rows = [(link.other, {"name": ctx.ix.name(link.other), "start": link.attrs["start"]}, [link.edge_id])
            for link in links]
    return _table(ctx, f"List every chief executive {ctx.ix.name(org)} has had, with the date each took office.",
                  org, rows, [_NAME, _date_col("start")], news=True)


def _cities_of(ctx: TaskContext, country: str) -> Draft | None:
    rows = []
    for link in ctx.ix.inn(country, "located_in"):
        n = ctx.ix.node(link.other)
        rows.append((link.other, {"name": n["name"], "population": str(n["population"]),
                                  "founded": n["founded"][:4]}, [link.edge_id]))
    cols = [_NAME, TableColumn(name="population", preprocess="extract_number", metric="number_near", criterion=0.1),
            TableColumn(name="founded", preprocess="extract_number", metric="exact_match")]
    return _table(ctx, f"List every city of {ctx.ix.name(country)} with its population and founding year.",
                  country, rows, cols)


TABLE_TEMPLATES = [
    Template("organizations_in_city", E.city, 2, _orgs_in_city),
    Template("products_of_organization", E.organization, 2, _products_of),
    Template("people_born_in_city", E.city, 2, _people_born_in),
    Template("chief_executives", E.organization, 2, _ceos_of),
    Template("cities_of_country", E.country, 2, _cities_of),
]


# -- records tasks (the world record tools) ---------------------------------------------------------
def _records(ctx: TaskContext, prompt: str, gold: RecordsGold, ids: list[str], edges: list[str],
             reference: str) -> Draft:
    hard = gold.kind == "write" and len(gold.final_state) > 1 or gold.min_pages > 1
    return Draft(prompt=prompt + " Use the record tools.", gold=gold, reference=reference, entity_ids=ids,
                 edge_ids=edges, hops=1, difficulty="hard" if hard else "medium")


def _count_members(ctx: TaskContext, org: str) -> Draft | None:
    links = ctx.ix.inn(org, "member_of")
    if not links:
        return None
    n = str(len(links))
    gold = RecordsGold(kind="read", answer=n, min_pages=pages_needed(len(links), ctx.spec.tasks.page_size))
    return _records(ctx, f"How many people are recorded as members of {ctx.ix.name(org)}, past and present?",
                    gold, [org] + [m.other for m in links], [m.edge_id for m in links], n)


def _total_employees(ctx: TaskContext, city: str) -> Draft | None:
    links = ctx.ix.inn(city, "headquartered_in")
    if len(links) < 2:
        return None
    total = str(sum(ctx.ix.node(link.other)["employees"] for link in links))
    gold = RecordsGold(kind="read", answer=total, min_pages=pages_needed(len(links), ctx.spec.tasks.page_size))
    return _records(ctx, f"What is the total number of employees of all organizations headquartered in "
                    f"{ctx.ix.name(city)}?", gold, [city] + [x.other for x in links], [x.edge_id for x in links], total)


def _first_product(ctx: TaskContext, org: str) -> Draft | None:
    links = ctx.ix.inn(org, "produced_by")
    dates = sorted((ctx.ix.node(x.other)["released"], x.other) for x in links)
    if len(dates) < 2 or dates[0][0] == dates[1][0]:
        return None
    first = dates[0][1]
    gold = RecordsGold(kind="read", answer=ctx.ix.name(first),
                       min_pages=pages_needed(len(links), ctx.spec.tasks.page_size))
    return _records(ctx, f"Which product of {ctx.ix.name(org)} was released first?", gold,
                    [org] + [x.other for x in links], [x.edge_id for x in links], ctx.ix.name(first))


def _move_headquarters(ctx: TaskContext, org: str) -> Draft | None:
    current = ctx.ix.out(org, "headquartered_in")[0]
    city = ctx.rng.choice(ctx.ix.by_type[E.city])
    if city == current.other or ctx.ix.node(city)["founded"] > ctx.ix.node(org)["founded"]:
        return None
    gold = RecordsGold(kind="write", final_state=[StateCheck(record_id=org, field="headquartered_in", value=city)])
    return _records(ctx, f"{ctx.ix.name(org)} has moved its headquarters to {ctx.ix.name(city)}. Update its record.",
                    gold, [org, city], [current.edge_id], f"headquartered_in = {city}")


def _set_employees(ctx: TaskContext, org: str) -> Draft | None:
    new = ctx.ix.node(org)["employees"] + ctx.rng.randint(1, 500)
    gold = RecordsGold(kind="write", final_state=[StateCheck(record_id=org, field="employees", value=new)])
    return _records(ctx, f"{ctx.ix.name(org)} now has {new} employees. Update its record.", gold, [org], [],
                    f"employees = {new}")


def _add_member(ctx: TaskContext, person: str) -> Draft | None:
    org = ctx.rng.choice(ctx.ix.by_type[E.organization])
    p, o = ctx.ix.node(person), ctx.ix.node(org)
    if any(m.other == org for m in ctx.ix.out(person, "member_of")) or p["died"]:
        return None
    lo = max(dt.date.fromisoformat(o["founded"]), dt.date.fromisoformat(p["born"]) + dt.timedelta(days=6575))
    today = ctx.ix.graph.graph["reference_date"]
    if lo.isoformat() >= today:
        return None
    date = (lo + dt.timedelta(days=ctx.rng.randint(0, (dt.date.fromisoformat(today) - lo).days))).isoformat()
    gold = RecordsGold(kind="write", final_state=[
        StateCheck(record_id=f"member_of:{person}:{org}", field="start", value=date)])
    return _records(ctx, f"Record that {p['name']} became a member of {o['name']} on {date}.", gold,
                    [person, org], [], f"member_of:{person}:{org} start = {date}")


RECORDS_TEMPLATES = [
    Template("count_members", E.organization, 1, _count_members,
             size=lambda ctx, n: len(ctx.ix.inn(n, "member_of"))),
    Template("total_employees_in_city", E.city, 1, _total_employees,
             size=lambda ctx, n: len(ctx.ix.inn(n, "headquartered_in"))),
    Template("first_product", E.organization, 1, _first_product,
             size=lambda ctx, n: len(ctx.ix.inn(n, "produced_by"))),
    Template("move_headquarters", E.organization, 1, _move_headquarters),
    Template("set_employees", E.organization, 1, _set_employees),
    Template("add_member", E.person, 1, _add_member),
]

ALL_TEMPLATES = {"qa": QA_TEMPLATES, "table": TABLE_TEMPLATES, "records": RECORDS_TEMPLATES}
"""Task type -> templates, in the order tasks are generated."""
