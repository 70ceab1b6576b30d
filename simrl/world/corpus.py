"""Render a world graph as a corpus of linked pages.

One page per entity (title, infobox, prose, links) plus list pages (organizations per city, members
of an organization, ...) and dated news items (acquisitions, chief-executive appointments, product
launches). Facts are split across pages on purpose, so answering needs links or a second search:

* chief-executive term dates and acquisition dates appear only in news items;
* who took part in an event appears only on the event's page;
* an organization's products and members are on list pages its page links to.

URLs are stable and fictional, under the reserved ``.example`` domain (RFC 2606):
``https://www.{domain}.example/wiki/{Slug}``, ``/list/{slug}``, ``/news/{date}/{slug}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from simrl.world.index import WorldIndex
from simrl.world.schema import Document, EntityType

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def long_date(iso: str) -> str:
    """``"1987-03-04"`` -> ``"March 4, 1987"``."""
    y, m, d = iso.split("-")
    return f"{_MONTHS[int(m) - 1]} {int(d)}, {y}"


def slugify(title: str) -> str:
    """URL path segment for a title: spaces to ``_``, drops characters that are not URL-safe."""
    return re.sub(r"[^A-Za-z0-9_\-]", "", title.replace(" ", "_"))


@dataclass
class Corpus:
    """A rendered corpus and the maps tasks need to cite pages.

    Attributes:
        documents: all pages in a stable order (entity pages by id, then lists, then news).
        entity_url: entity id -> URL of its page.
        edge_url: edge id -> URL of the news item that states it (appointments, acquisitions).
    """

    documents: list[Document] = field(default_factory=list)
    entity_url: dict[str, str] = field(default_factory=dict)
    edge_url: dict[str, str] = field(default_factory=dict)


class _Renderer:
    def __init__(self, ix: WorldIndex, domain: str, lists: bool, news: bool) -> None:
        self.ix, self.base = ix, f"https://www.{domain}.example"
        self.lists_on, self.news_on = lists, news
        self.corpus = Corpus()
        self._slugs: set[str] = set()
        self.list_url: dict[tuple[str, str], str] = {}

    def _url(self, section: str, title: str) -> str:
        slug = slugify(title)
        while f"{section}/{slug}" in self._slugs:
            slug += "_"
        self._slugs.add(f"{section}/{slug}")
        return f"{self.base}/{section}/{slug}"

    def link(self, nid: str) -> str:
        return f"[{self.ix.name(nid)}]({self.corpus.entity_url[nid]})"

    def add(self, doc_id, url, title, kind, text, entity_ids, date=None) -> None:
        self.corpus.documents.append(Document.model_construct(
            doc_id=doc_id, url=url, title=title, kind=kind, text=text, date=date, entity_ids=entity_ids))

    # -- pages -----------------------------------------------------------------------------------
    def render(self) -> Corpus:
        ix = self.ix
        for nid in ix.graph.nodes:
            self.corpus.entity_url[nid] = self._url("wiki", ix.name(nid))
        if self.lists_on:
            self._plan_lists()
        for nid in ix.graph.nodes:
            infobox, prose, related = getattr(self, f"_{ix.node(nid)['type']}")(nid)
            self._entity_page(nid, infobox, prose, related)
        if self.lists_on:
            self._list_pages()
        if self.news_on:
            self._news()
        return self.corpus

    def _entity_page(self, nid: str, infobox: list[tuple[str, str]], prose: list[str], related: list[str]) -> None:
        node = self.ix.node(nid)
        rows = "\n".join(f"| {k} | {v} |" for k, v in infobox)
        text = (f"# {node['name']}\n\n| {node['type'].replace('_', ' ').title()} | |\n|---|---|\n{rows}\n\n"
                + " ".join(prose))
        if related:
            text += "\n\n## See also\n" + "\n".join(f"- {r}" for r in related)
        self.add(f"page:{nid}", self.corpus.entity_url[nid], node["name"], "entity", text, [nid])

    def _country(self, nid):
        n, ix = self.ix.node(nid), self.ix
        capital = ix.inn(nid, "capital_of")
        box = [("Independence", long_date(n["founded"])), ("Region", n["region"]),
               ("Population", f"{n['population']:,}"), ("Area", f"{n['area_km2']:,} km²"),
               ("Currency", n["currency"])]
        prose = [f"{n['name']} is a country in the {n['region'].lower()} region, independent since "
                 f"{long_date(n['founded'])}."]
        if capital:
            box.insert(0, ("Capital", self.link(capital[0].other)))
            prose.append(f"Its capital is {self.link(capital[0].other)}.")
        return box, prose, self._lists_of(nid)

    def _city(self, nid):
        n, ix = self.ix.node(nid), self.ix
        country = ix.country_of_city(nid)
        box = [("Country", self.link(country)), ("Founded", n["founded"][:4]),
               ("Population", f"{n['population']:,}"), ("Elevation", f"{n['elevation_m']} m")]
        prose = [f"{n['name']} is a city in {self.link(country)}, founded in {n['founded'][:4]}."]
        return box, prose, self._lists_of(nid)

    def _person(self, nid):
        n, ix = self.ix.node(nid), self.ix
        city = ix.out(nid, "born_in")[0].other
        box = [("Born", f"{long_date(n['born'])}, {self.link(city)}"), ("Occupation", n["occupation"])]
        prose = [f"{n['name']} (born {long_date(n['born'])} in {self.link(city)}) is a {n['occupation']}."]
        if n["died"]:
            box.append(("Died", long_date(n["died"])))
            prose[0] = prose[0].replace(" is a ", " was a ") + f" {n['name']} died on {long_date(n['died'])}."
        for link in ix.inn(nid, "founded_by"):
            prose.append(f"{n['name']} co-founded {self.link(link.other)}.")
        for link in ix.out(nid, "ceo_of"):
            prose.append(f"{n['name']} served as chief executive of {self.link(link.other)}.")
        members = ix.out(nid, "member_of")
        if members:
            prose.append("Member of: " + ", ".join(
                f"{self.link(m.other)} (since {m.attrs['start'][:4]})" for m in members) + ".")
        related = [self.link(w.other) for w in ix.inn(nid, "created_by")]
        return box, prose, related

    def _organization(self, nid):
        n, ix = self.ix.node(nid), self.ix
        city = ix.out(nid, "headquartered_in")[0].other
        founders = [self.link(f.other) for f in ix.out(nid, "founded_by")]
        box = [("Founded", long_date(n["founded"])), ("Founders", ", ".join(founders)),
               ("Headquarters", self.link(city)), ("Industry", n["industry"]),
               ("Employees", f"{n['employees']:,}")]
        prose = [f"{n['name']} is a {n['industry']} company founded on {long_date(n['founded'])} by "
                 f"{' and '.join(founders)}. It is headquartered in {self.link(city)}."]
        ceo = ix.ceo_at(nid, ix.graph.graph["reference_date"])
        if ceo:
            box.append(("Chief executive", self.link(ceo.other)))
            prose.append(f"Its chief executive is {self.link(ceo.other)}.")
        acquired = ix.inn(nid, "acquired")
        if acquired:
            prose.append(f"It was acquired by {self.link(acquired[0].other)}.")
        bought = ix.out(nid, "acquired")
        if bought:
            prose.append("It has acquired " + ", ".join(self.link(b.other) for b in bought) + ".")
        return box, prose, self._lists_of(nid)

    def _product(self, nid):
        n, ix = self.ix.node(nid), self.ix
        maker = ix.out(nid, "produced_by")[0].other
        box = [("Manufacturer", self.link(maker)), ("Released", long_date(n["released"])),
               ("Category", n["category"]), ("Price", f"${n['price']:,.2f}")]
        prose = [f"{n['name']} is a {n['category']} made by {self.link(maker)}, released on "
                 f"{long_date(n['released'])} at a price of ${n['price']:,.2f}."]
        return box, prose, []

    def _event(self, nid):
        n, ix = self.ix.node(nid), self.ix
        city = ix.out(nid, "held_in")[0].other
        box = [("Date", long_date(n["date"])), ("Location", self.link(city)), ("Category", n["category"])]
        prose = [f"{n['name']} was a {n['category']} held in {self.link(city)} on {long_date(n['date'])}."]
        org = ix.out(nid, "organized_by")
        if org:
            box.append(("Organizer", self.link(org[0].other)))
            prose.append(f"It was organized by {self.link(org[0].other)}.")
        people = [self.link(p.other) for p in ix.inn(nid, "participated_in")]
        if people:
            prose.append("Participants included " + ", ".join(people) + ".")
        return box, prose, []

    def _creative_work(self, nid):
        n, ix = self.ix.node(nid), self.ix
        creator = ix.out(nid, "created_by")[0].other
        box = [("Kind", n["kind"]), ("Creator", self.link(creator)), ("Released", long_date(n["released"]))]
        prose = [f"{n['name']} is a {n['kind']} by {self.link(creator)}, released on {long_date(n['released'])}."]
        pub = ix.out(nid, "published_by")
        if pub:
            box.append(("Publisher", self.link(pub[0].other)))
            prose.append(f"It was published by {self.link(pub[0].other)}.")
        return box, prose, []

    # -- list pages and news ---------------------------------------------------------------------
    _LISTS = (  # (list kind, owner type, relation, direction, title format)
        ("organizations", EntityType.city, "headquartered_in", "in", "Organizations headquartered in {}"),
        ("people", EntityType.city, "born_in", "in", "People born in {}"),
        ("cities", EntityType.country, "located_in", "in", "Cities of {}"),
        ("products", EntityType.organization, "produced_by", "in", "Products of {}"),
        ("members", EntityType.organization, "member_of", "in", "Members of {}"),
    )

    def _plan_lists(self) -> None:
        for kind, etype, rel, _, fmt in self._LISTS:
            for nid in self.ix.by_type[etype]:
                if self.ix.inn(nid, rel):
                    self.list_url[(kind, nid)] = self._url("list", fmt.format(self.ix.name(nid)))

    def _lists_of(self, nid: str) -> list[str]:
        name = self.ix.name(nid)
        return [f"[{fmt.format(name)}]({self.list_url[(kind, nid)]})"
                for kind, _, _, _, fmt in self._LISTS if (kind, nid) in self.list_url]

    def _list_pages(self) -> None:
        ix = self.ix
        for kind, etype, rel, _, fmt in self._LISTS:
            for owner in ix.by_type[etype]:
                url = self.list_url.get((kind, owner))
                if url is None:
                    continue
                links = ix.inn(owner, rel)
                title = fmt.format(ix.name(owner))
                rows = "\n".join(f"| {self.link(m.other)} | {self._list_detail(kind, m)} |" for m in links)
                text = f"# {title}\n\nSee also {self.link(owner)}.\n\n| Name | Details |\n|---|---|\n{rows}"
                self.add(f"list:{kind}:{owner}", url, title, "list", text, [owner] + [m.other for m in links])

    def _list_detail(self, kind: str, link) -> str:
        n = self.ix.node(link.other)
        if kind == "organizations":
            return f"founded {n['founded'][:4]}, {n['industry']}"
        if kind == "people":
            return f"born {n['born'][:4]}, {n['occupation']}"
        if kind == "cities":
            return f"population {n['population']:,}"
        if kind == "products":
            return f"released {n['released'][:4]}, {n['category']}"
        return f"member since {link.attrs['start'][:4]}"

    def _news(self) -> None:
        ix, items = self.ix, []
        for key, acquirer, target, d in ix.by_relation.get("acquired", []):
            title = f"{ix.name(acquirer)} acquires {ix.name(target)}"
            body = (f"On {long_date(d['date'])}, {self.link(acquirer)} completed its acquisition of "
                    f"{self.link(target)}, founded in {ix.node(target)['founded'][:4]}.")
            items.append((d["date"], title, body, [acquirer, target], key))
        for key, pid, org, d in ix.by_relation.get("ceo_of", []):
            title = f"{ix.name(pid)} named chief executive of {ix.name(org)}"
            body = f"{self.link(org)} announced on {long_date(d['start'])} that {self.link(pid)} will lead the company."
            if d["end"]:
                body += f" The term ended on {long_date(d['end'])}."
            items.append((d["start"], title, body, [pid, org], key))
        for i, (key, prod, org, _) in enumerate(ix.by_relation.get("produced_by", [])):
            if i % 3 == 0:
                date = ix.node(prod)["released"]
                title = f"{ix.name(org)} launches {ix.name(prod)}"
                body = f"{self.link(org)} released {self.link(prod)} on {long_date(date)}."
                items.append((date, title, body, [prod, org], key))
        for n, (date, title, body, ids, key) in enumerate(sorted(items, key=lambda it: (it[0], it[4]))):
            url = self._url(f"news/{date}", title)
            self.corpus.edge_url[key] = url
            self.add(f"news:{n:06d}", url, title, "news", f"# {title}\n\n*{long_date(date)}*\n\n{body}", ids, date)


def render_corpus(ix: WorldIndex, domain: str, *, lists: bool = True, news: bool = True) -> Corpus:
    """Render every page of a world.

    Args:
        ix: the world's index.
        domain: fictional site name; pages live under ``https://www.{domain}.example/``.
        lists: also render list pages. news: also render dated news items.

    Returns:
        A :class:`Corpus` (documents in a stable order, and the URL maps tasks cite).
    """
    return _Renderer(ix, domain, lists, news).render()
